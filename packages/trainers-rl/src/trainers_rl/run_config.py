"""``PPORunConfig``: one ``trainers-rl ppo`` run, written beside its results as config.yaml."""

from __future__ import annotations

import dataclasses

from trainers_rl.rl.ppo.config import PPOConfig
from trainyard_core.tracking import TrackingConfig

__all__ = ["EvalConfig", "PPORunConfig"]


@dataclasses.dataclass
class EvalConfig:
    """Closed-loop evaluation after training, on seeds training never used."""

    episodes: int = 20
    seed: int = dataclasses.field(
        default=1_000_000,
        metadata={"help": "first evaluation seed; training seeds are "
                          "below it"})

    def __post_init__(self) -> None:
        if self.episodes < 1:
            raise ValueError(f"eval.episodes must be >= 1, got {self.episodes}")


@dataclasses.dataclass
class PPORunConfig:
    """Train with PPO, evaluate against a random policy, write one run directory."""

    name: str = "ppo"
    output_dir: str = dataclasses.field(default="runs",
                                        metadata={
                                            "help": "parent of the run directory",
                                            "flags": ("--output-dir",)
                                        })
    ppo: PPOConfig = dataclasses.field(default_factory=PPOConfig)
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)
    tracking: TrackingConfig = dataclasses.field(default_factory=TrackingConfig)

    def __post_init__(self) -> None:
        if self.eval.seed < self.ppo.seed + self.ppo.num_envs:
            raise ValueError(f"eval.seed {self.eval.seed} overlaps the training seeds "
                             f"{self.ppo.seed}..{self.ppo.seed + self.ppo.num_envs - 1}")
