"""``PPOConfig``: PPO hyper-parameters, with the names of the seed's ``PPOConfig``."""

from __future__ import annotations

import dataclasses

from trainers_rl.rl.config import AlgorithmConfig

__all__ = ["PPOConfig"]


@dataclasses.dataclass
class PPOConfig(AlgorithmConfig):
    """What PPO needs to know; SB3's names differ and are mapped in the trainer."""

    gae_lambda: float = 0.95
    clip_epsilon: float = 0.2
    num_epochs: int = 10
    batch_size: int = 64
    num_steps: int = dataclasses.field(default=2048,
                                       metadata={"help": "rollout length per environment"})
    ent_coef: float = 0.0
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    target_kl: float | None = dataclasses.field(
        default=None, metadata={"help": "stop an update's epochs early past this KL"})
    value_warmup_steps: int = dataclasses.field(
        default=0,
        metadata={
            "help": "first env steps in which only the value head learns (fine-tuning a "
                    "cloned policy whose critic is untrained)"
        })

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.value_warmup_steps < 0:
            raise ValueError(f"value_warmup_steps must be >= 0, got {self.value_warmup_steps}")
        for name in ("num_epochs", "batch_size", "num_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.gae_lambda <= 1:
            raise ValueError(f"gae_lambda must be in [0, 1], got {self.gae_lambda}")
        if self.clip_epsilon <= 0:
            raise ValueError(f"clip_epsilon must be > 0, got {self.clip_epsilon}")
        if self.batch_size > self.num_envs * self.num_steps:
            raise ValueError(f"batch_size {self.batch_size} exceeds one rollout of "
                             f"num_envs * num_steps = {self.num_envs * self.num_steps} steps")
