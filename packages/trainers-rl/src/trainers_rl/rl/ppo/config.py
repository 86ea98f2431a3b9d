"""``PPOTrainingConfig``: PPO hyper-parameters, in stable-baselines3's names; ``PPOConfig``:
those and what to build when no model or env is passed in (``BuildOptions``).

Seed 001 called three of them ``clip_epsilon``, ``num_epochs`` and ``num_steps``; those stay
accepted as aliases (constructor keywords, YAML, overrides, flags, saved configs).
"""

from __future__ import annotations

import dataclasses

from trainers_rl.rl.config import AlgorithmConfig, BuildOptions
from trainyard_core.config import accepts_aliases

__all__ = ["PPOConfig", "PPOTrainingConfig"]


@accepts_aliases
@dataclasses.dataclass
class PPOTrainingConfig(AlgorithmConfig):
    """What PPO needs to know, each field named as SB3's ``PPO`` names it: all a trainer
    given a model and an env uses (the main job's ``rl.ppo`` section, seed 001's API)."""

    gae_lambda: float = 0.95
    clip_range: float = dataclasses.field(default=0.2,
                                          metadata={
                                              "help": "PPO's clipping of the probability ratio",
                                              "aliases": ("clip_epsilon",)
                                          })
    n_epochs: int = dataclasses.field(default=10,
                                      metadata={
                                          "help": "passes over each rollout per update",
                                          "aliases": ("num_epochs",)
                                      })
    batch_size: int = 64
    n_steps: int = dataclasses.field(default=2048,
                                     metadata={
                                         "help": "rollout length per environment",
                                         "aliases": ("num_steps",)
                                     })
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
        for name in ("n_epochs", "batch_size", "n_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.gae_lambda <= 1:
            raise ValueError(f"gae_lambda must be in [0, 1], got {self.gae_lambda}")
        if self.clip_range <= 0:
            raise ValueError(f"clip_range must be > 0, got {self.clip_range}")
        if self.batch_size > self.num_envs * self.n_steps:
            raise ValueError(f"batch_size {self.batch_size} exceeds one rollout of "
                             f"num_envs * n_steps = {self.num_envs * self.n_steps} steps")


@accepts_aliases
@dataclasses.dataclass
class PPOConfig(PPOTrainingConfig, BuildOptions):
    """PPO as a job of its own (``trainers-rl ppo``, ``PPOTrainer(config)``): the
    hyper-parameters and what to build when no env (``env_id``) or model (``policy``,
    ``net_arch``, ``hidden_size``) is passed in. Given a model or env, build options left at
    their defaults are fine; others are refused (``inapplicable_options``)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_build_options()
