"""DrivingVLA inside stable-baselines3: PPO/SAC train it, ``save_pretrained`` ships it.

SB3's actor-critic policy is assembled around the model: DrivingVLA's encoders and trunk are
the features extractor, the MLP extractor is empty (``net_arch=[]``), and SB3's action and
value layers have exactly the shapes of DrivingVLA's control and value heads. After training,
``to_driving_vla`` copies those layers (and ``log_std``) into the model, so
``DrivingVLA.from_pretrained`` reproduces the policy's deterministic actions.

SAC is assembled the same way around its actor (``sac_policy_kwargs``): the actor's features
extractor is DrivingVLA, its ``mu`` layer is the control head, and the model squashes controls
with tanh (``control_activation="tanh"``) as SAC does. SAC's critics are Q(s, a) networks with
their own DrivingVLA encoders; DrivingVLA has no head for them, so they are not exported.
"""

from __future__ import annotations

from typing import Any

import torch
from gymnasium import spaces
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.sac.policies import SACPolicy
from torch import nn

from driving_vla import DrivingVLA, DrivingVLAConfig

__all__ = [
    "DrivingVLAExtractor", "driving_vla_policy_kwargs", "load_driving_vla", "load_driving_vla_sac",
    "sac_policy_kwargs", "to_driving_vla", "to_driving_vla_sac"
]


class DrivingVLAExtractor(BaseFeaturesExtractor):
    """DrivingVLA's observation encoders and trunk as an SB3 features extractor."""

    def __init__(self, observation_space: spaces.Dict, config: DrivingVLAConfig) -> None:
        super().__init__(observation_space, features_dim=config.hidden_size)
        missing = [k for k in config.observation_keys if k not in observation_space.spaces]
        if missing:
            raise ValueError(f"the environment observes {list(observation_space.spaces)}, but "
                             f"DrivingVLAConfig.observation_keys also needs {missing}")
        self.model = DrivingVLA(config)
        self.channels = 3 * config.num_cameras

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        inputs = {k: observations[k] for k in self.model.config.observation_keys}
        camera = inputs.get("camera")
        if camera is not None and camera.shape[1] == self.channels:
            # SB3 moves image channels first (VecTransposeImage); DrivingVLA takes them last.
            inputs["camera"] = camera.permute(0, 2, 3, 1)
        return self.model.encode(**inputs)


def driving_vla_policy_kwargs(config: DrivingVLAConfig) -> dict[str, Any]:
    """``policy_kwargs`` that make SB3's ``MultiInputPolicy`` a DrivingVLA."""
    return {
        "features_extractor_class": DrivingVLAExtractor,
        "features_extractor_kwargs": {
            "config": config
        },
        "net_arch": [],
        "log_std_init": config.log_std_init,
        "normalize_images": False,  # DrivingVLA scales uint8 images itself
    }


@torch.no_grad()
def to_driving_vla(policy: ActorCriticPolicy) -> DrivingVLA:
    """The trained DrivingVLA of an SB3 policy built with ``driving_vla_policy_kwargs``."""
    extractor = policy.features_extractor
    if not isinstance(extractor, DrivingVLAExtractor):
        raise TypeError("this policy was not built with driving_vla_policy_kwargs()")
    model = extractor.model
    model.control_head.load_state_dict(policy.action_net.state_dict())
    model.value_head.load_state_dict(policy.value_net.state_dict())
    model.log_std.copy_(policy.log_std)
    return model


@torch.no_grad()
def load_driving_vla(policy: ActorCriticPolicy,
                     model: DrivingVLA,
                     keep_log_std: bool = True) -> None:
    """Start an SB3 policy from a trained DrivingVLA (e.g. behaviour cloning's)."""
    extractor = policy.features_extractor
    if not isinstance(extractor, DrivingVLAExtractor):
        raise TypeError("this policy was not built with driving_vla_policy_kwargs()")
    extractor.model.load_state_dict(model.state_dict())
    policy.action_net.load_state_dict(model.control_head.state_dict())
    policy.value_net.load_state_dict(model.value_head.state_dict())
    if keep_log_std:
        policy.log_std.copy_(model.log_std)


def sac_policy_kwargs(config: DrivingVLAConfig, qf_net_arch: list[int]) -> dict[str, Any]:
    """``policy_kwargs`` that make the actor of SB3's SAC ``MultiInputPolicy`` a DrivingVLA.

    The actor has no hidden layers after the extractor (``pi=[]``), so ``actor.mu`` is a
    ``Linear(hidden_size, 3)`` like the control head. The critics build their own DrivingVLA
    encoders (SAC's ``share_features_extractor=False``: a critic loss must not move the
    actor's features) followed by ``qf_net_arch`` hidden layers.
    """
    if config.control_activation != "tanh":
        raise ValueError(f"SAC squashes actions with tanh: the DrivingVLAConfig needs "
                         f"control_activation='tanh', got {config.control_activation!r}")
    return {
        "features_extractor_class": DrivingVLAExtractor,
        "features_extractor_kwargs": {
            "config": config
        },
        "net_arch": {
            "pi": [],
            "qf": list(qf_net_arch)
        },
        "normalize_images": False,  # DrivingVLA scales uint8 images itself
        "share_features_extractor": False,
    }


def _sac_actor_parts(policy: SACPolicy) -> tuple[DrivingVLAExtractor, nn.Linear]:
    extractor = policy.actor.features_extractor
    mu = policy.actor.mu
    if not isinstance(extractor, DrivingVLAExtractor) or not isinstance(mu, nn.Linear):
        raise TypeError("this SAC policy was not built with sac_policy_kwargs() (or uses gSDE)")
    return extractor, mu


@torch.no_grad()
def to_driving_vla_sac(policy: SACPolicy) -> DrivingVLA:
    """The trained DrivingVLA of a SAC policy built with ``sac_policy_kwargs``.

    The control head becomes ``actor.mu``; with ``control_activation="tanh"`` the model's
    controls equal SAC's deterministic actions. ``log_std`` is left alone: SAC's standard
    deviation is a layer of the features, which DrivingVLA's single vector cannot hold.
    """
    extractor, mu = _sac_actor_parts(policy)
    model = extractor.model
    model.control_head.load_state_dict(mu.state_dict())
    return model


@torch.no_grad()
def load_driving_vla_sac(policy: SACPolicy, model: DrivingVLA) -> None:
    """Start a SAC actor from a trained DrivingVLA: encoders, trunk and control head.

    The critics stay freshly initialised: DrivingVLA's value head estimates V(s) for its own
    policy, not SAC's Q(s, a).
    """
    extractor, mu = _sac_actor_parts(policy)
    extractor.model.load_state_dict(model.state_dict())
    mu.load_state_dict(model.control_head.state_dict())
