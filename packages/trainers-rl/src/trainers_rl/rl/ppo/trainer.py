"""``PPOTrainer``: stable-baselines3 PPO, with DrivingVLA or an MLP as the policy."""

from __future__ import annotations

from typing import Any, ClassVar

from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback

from trainers_rl.rl.ppo.config import PPOConfig, PPOTrainingConfig
from trainers_rl.rl.trainer import Trainer

__all__ = ["PPOTrainer"]


class PPOTrainer(Trainer):
    """``PPOTrainer(model=DrivingVLA(...), env=..., config=PPOConfig(...)).train()``."""

    algorithm: ClassVar[type[PPO]] = PPO
    config_class: ClassVar[type[PPOConfig]] = PPOConfig
    training_config_class: ClassVar[type[PPOTrainingConfig]] = PPOTrainingConfig
    name: ClassVar[str] = "ppo"
    config: PPOTrainingConfig

    def _algorithm_kwargs(self) -> dict[str, Any]:
        c = self.config
        return {
            "n_steps": c.n_steps,
            "batch_size": c.batch_size,
            "n_epochs": c.n_epochs,
            "gae_lambda": c.gae_lambda,
            "clip_range": c.clip_range,
            "ent_coef": c.ent_coef,
            "vf_coef": c.vf_coef,
            "max_grad_norm": c.max_grad_norm,
            "target_kl": c.target_kl,
        }

    def _extra_callbacks(self) -> list[BaseCallback]:
        if self.config.value_warmup_steps > 0:
            return [ValueWarmup(self.config.value_warmup_steps)]
        return []


class ValueWarmup(BaseCallback):
    """Freeze everything but the value head for the first ``steps`` env steps.

    A policy cloned from demonstrations starts PPO with a critic that knows nothing; its
    advantages are noise, and the first updates undo the cloning. Fitting the value head
    first (the policy still acts, so the data is on-policy) avoids that.
    """

    def __init__(self, steps: int) -> None:
        super().__init__()
        self.steps = steps

    def _on_rollout_start(self) -> None:
        frozen = self.num_timesteps < self.steps
        policy = self.model.policy
        for name, param in policy.named_parameters():
            if not name.startswith("value_net."):
                param.requires_grad_(not frozen)

    def _on_step(self) -> bool:
        return True
