"""``AlgorithmConfig``: the fields PPO and SAC share (environment, policy, checkpoints)."""

from __future__ import annotations

import dataclasses

__all__ = ["POLICIES", "AlgorithmConfig"]

POLICIES = ("mlp", "driving_vla")


@dataclasses.dataclass
class AlgorithmConfig:
    """What every trainer needs besides its algorithm's own hyper-parameters."""

    env_id: str = dataclasses.field(
        default="CartPole-v1",
        metadata={"help": "registered Gymnasium id, used when no env is passed in"})
    num_envs: int = dataclasses.field(default=8, metadata={"help": "environments stepped together"})
    total_timesteps: int = 100_000
    learning_rate: float = 3e-4
    gamma: float = 0.99
    policy: str = dataclasses.field(
        default="mlp", metadata={"help": "mlp (SB3's MlpPolicy/MultiInputPolicy) or driving_vla"})
    net_arch: list[int] = dataclasses.field(default_factory=lambda: [64, 64],
                                            metadata={"help": "hidden layers of the mlp policy"})
    hidden_size: int = dataclasses.field(
        default=256, metadata={"help": "DrivingVLA width, when no model is passed in"})
    log_std_init: float | None = dataclasses.field(
        default=None, metadata={"help": "initial log std of the actions (None = the model's)"})
    checkpoint_every: int = dataclasses.field(
        default=0, metadata={"help": "env steps between resumable checkpoints (0 = final only)"})
    keep_checkpoints: int = dataclasses.field(default=2,
                                              metadata={"help": "newest checkpoints kept"})
    seed: int = 0
    device: str = dataclasses.field(default="auto", metadata={"help": "auto, cpu or cuda"})

    def __post_init__(self) -> None:
        for name in ("num_envs", "total_timesteps", "hidden_size", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.checkpoint_every < 0:
            raise ValueError(f"checkpoint_every must be >= 0, got {self.checkpoint_every}")
        if not 0 < self.gamma <= 1:
            raise ValueError(f"gamma must be in (0, 1], got {self.gamma}")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.policy not in POLICIES:
            raise ValueError(f"policy must be one of {', '.join(POLICIES)}, got {self.policy!r}")
