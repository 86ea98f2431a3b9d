"""DrivingVLA inside stable-baselines3: PPO/SAC train it, ``save_pretrained`` ships it.

SB3's actor-critic policy is assembled around the model: DrivingVLA's encoders and trunk are
the features extractor, the MLP extractor is empty (``net_arch=[]``), and SB3's action and
value layers have exactly the shapes of DrivingVLA's control and value heads. After training,
``to_driving_vla`` copies those layers (and ``log_std``) into the model, so
``DrivingVLA.from_pretrained`` reproduces the policy's deterministic actions.
"""

from __future__ import annotations

from typing import Any

import torch
from gymnasium import spaces
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

from driving_vla import DrivingVLA, DrivingVLAConfig

__all__ = ["DrivingVLAExtractor", "driving_vla_policy_kwargs", "to_driving_vla"]


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
