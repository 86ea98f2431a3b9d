"""``SACTrainer``: stable-baselines3 SAC, with DrivingVLA or an MLP as the actor."""

from __future__ import annotations

import copy
import warnings
from typing import Any, ClassVar, cast

from stable_baselines3 import SAC
from stable_baselines3.sac.policies import SACPolicy

from driving_vla import DrivingVLA, DrivingVLAConfig
from trainers_rl.rl.config import AlgorithmConfig, changed_from_default
from trainers_rl.rl.policies import load_driving_vla_sac, sac_policy_kwargs, to_driving_vla_sac
from trainers_rl.rl.sac.config import SACConfig, SACTrainingConfig
from trainers_rl.rl.trainer import Trainer

__all__ = ["SACTrainer"]


class SACTrainer(Trainer):
    """``SACTrainer(model=DrivingVLA(...), env=..., config=SACConfig(...)).train()``.

    SAC squashes its actions with tanh, so the actor's DrivingVLA always has
    ``control_activation="tanh"``: the trainer builds it from a copy of the given model's
    config with that one field changed, and ``save_pretrained`` writes a tanh model whose
    ``act`` equals SAC's deterministic action. A model given with ``"clip"`` keeps its
    encoders and trunk exactly, but its control head is read through tanh from then on, so its
    first actions differ (a warning says so). After ``train()`` the given model holds the
    trained actor and is switched to ``"tanh"`` too, the only way its weights act as trained.
    """

    algorithm: ClassVar[type[SAC]] = SAC
    config_class: ClassVar[type[SACConfig]] = SACConfig
    training_config_class: ClassVar[type[SACTrainingConfig]] = SACTrainingConfig
    name: ClassVar[str] = "sac"
    config: SACTrainingConfig

    def _inapplicable_options(self, config: AlgorithmConfig, model_given: bool,
                              env_given: bool) -> list[str]:
        problems = super()._inapplicable_options(config, model_given, env_given)
        assert isinstance(config, SACTrainingConfig)  # _sort_arguments checked it
        builds_mlp = not model_given and getattr(config, "policy", "mlp") == "mlp"
        if builds_mlp and changed_from_default(config, "qf_net_arch"):
            problems.append(f"{type(config).__name__}.qf_net_arch={config.qf_net_arch} sets the "
                            f"critic layers after DrivingVLA's features, but the policy built is "
                            f"the mlp (no model passed in, policy mlp), whose critics use "
                            f"net_arch; remove qf_net_arch or set policy: driving_vla")
        return problems

    def _algorithm_kwargs(self) -> dict[str, Any]:
        c = self.config
        return {
            "buffer_size": c.buffer_size,
            "learning_starts": c.learning_starts,
            "batch_size": c.batch_size,
            "tau": c.tau,
            "train_freq": c.train_freq,
            "gradient_steps": c.gradient_steps,
            "ent_coef": c.ent_coef,
            "target_entropy": "auto" if c.target_entropy is None else c.target_entropy,
        }

    @property
    def _sac_policy(self) -> SACPolicy:
        return cast(SACPolicy, self.model.policy)

    def _driving_vla_policy_kwargs(self, config: DrivingVLAConfig) -> dict[str, Any]:
        actor_config = copy.deepcopy(config)
        actor_config.control_activation = "tanh"
        return sac_policy_kwargs(actor_config, self.config.qf_net_arch)

    def _load_driving_vla(self, model: DrivingVLA) -> None:
        if model.config.control_activation != "tanh":
            warnings.warn(
                f"SACTrainer: the given DrivingVLA has control_activation="
                f"{model.config.control_activation!r}; SAC reads its control head through tanh, "
                f"so the initial actions differ from the model's (encoders and trunk carry over "
                f"unchanged). Build the model with control_activation='tanh' to silence this.",
                UserWarning,
                stacklevel=3)
        load_driving_vla_sac(self._sac_policy, model)

    def _export_driving_vla(self) -> DrivingVLA:
        return to_driving_vla_sac(self._sac_policy)
