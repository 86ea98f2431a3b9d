"""``PPOConfig``: PPO hyper-parameters, with the names of the seed's ``PPOConfig``."""

from __future__ import annotations

import dataclasses

__all__ = ["PPOConfig"]


@dataclasses.dataclass
class PPOConfig:
    """What PPO needs to know; SB3's names differ and are mapped in the trainer."""

    env_id: str = dataclasses.field(default="CartPole-v1",
                                    metadata={"help": "registered Gymnasium environment id"})
    num_envs: int = dataclasses.field(default=8, metadata={"help": "environments stepped together"})
    total_timesteps: int = 100_000
    learning_rate: float = 3e-4
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_epsilon: float = 0.2
    num_epochs: int = 10
    batch_size: int = 64
    num_steps: int = dataclasses.field(default=2048,
                                       metadata={"help": "rollout length per environment"})
    ent_coef: float = 0.0
    net_arch: list[int] = dataclasses.field(default_factory=lambda: [64, 64])
    seed: int = 0
    device: str = dataclasses.field(default="auto", metadata={"help": "auto, cpu or cuda"})

    def __post_init__(self) -> None:
        for name in ("num_envs", "total_timesteps", "num_epochs", "batch_size", "num_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.gamma <= 1 or not 0 <= self.gae_lambda <= 1:
            raise ValueError(f"gamma must be in (0, 1] and gae_lambda in [0, 1], got "
                             f"{self.gamma} and {self.gae_lambda}")
        if self.learning_rate <= 0 or self.clip_epsilon <= 0:
            raise ValueError("learning_rate and clip_epsilon must be > 0")
        if self.batch_size > self.num_envs * self.num_steps:
            raise ValueError(f"batch_size {self.batch_size} exceeds one rollout of "
                             f"num_envs * num_steps = {self.num_envs * self.num_steps} steps")
