"""What PPO and SAC configs share: hyper-parameters, and what to build when nothing is given.

A trainer is given a model and an environment (the main job, seed 001's
``PPOTrainer(model, env, config)``), or builds them itself (``trainers-rl ppo``, a bare
``PPOTrainer(config)``). The settings that choose what to build (``env_id``, ``policy``,
``net_arch``, ``hidden_size``, in ``BuildOptions``) cannot apply to what is given, so:

- ``PPOTrainingConfig`` / ``SACTrainingConfig`` hold only the hyper-parameters (for callers
  that always give a model and an env);
- ``PPOConfig`` / ``SACConfig`` add ``BuildOptions``; with a model or env given, a build
  option left at its default is fine (seed 001's configs and every saved config hold the
  defaults), any other value is refused naming it (``inapplicable_options``) instead of being
  silently ignored.
"""

from __future__ import annotations

import dataclasses
from typing import Any

__all__ = [
    "POLICIES", "AlgorithmConfig", "BuildOptions", "changed_from_default", "inapplicable_options"
]

POLICIES = ("mlp", "driving_vla")


@dataclasses.dataclass
class AlgorithmConfig:
    """The hyper-parameters every trainer needs besides its algorithm's own."""

    num_envs: int = dataclasses.field(default=8, metadata={"help": "environments stepped together"})
    total_timesteps: int = 100_000
    learning_rate: float = 3e-4
    gamma: float = 0.99
    log_std_init: float | None = dataclasses.field(
        default=None, metadata={"help": "initial log std of the actions (None = the model's)"})
    checkpoint_every: int = dataclasses.field(
        default=0, metadata={"help": "env steps between resumable checkpoints (0 = final only)"})
    keep_checkpoints: int = dataclasses.field(default=2,
                                              metadata={"help": "newest checkpoints kept"})
    seed: int = 0
    device: str = dataclasses.field(default="auto", metadata={"help": "auto, cpu or cuda"})

    def __post_init__(self) -> None:
        for name in ("num_envs", "total_timesteps", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.checkpoint_every < 0:
            raise ValueError(f"checkpoint_every must be >= 0, got {self.checkpoint_every}")
        if not 0 < self.gamma <= 1:
            raise ValueError(f"gamma must be in (0, 1], got {self.gamma}")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")


@dataclasses.dataclass
class BuildOptions:
    """What a trainer builds when it is given no env (``env_id``) or no model (the rest).

    A mixin of ``PPOConfig``/``SACConfig``; subclasses call ``_check_build_options`` from
    their ``__post_init__`` (it is not chained through ``super()``, whose order the mixin's
    place in the MRO would decide).
    """

    env_id: str = dataclasses.field(
        default="CartPole-v1",
        metadata={"help": "registered Gymnasium id to build (only when no env is passed in)"})
    policy: str = dataclasses.field(
        default="mlp",
        metadata={
            "help": "policy to build when no model is passed in: mlp (SB3's MlpPolicy/"
                    "MultiInputPolicy) or driving_vla (a given model is always a DrivingVLA)"
        })
    net_arch: list[int] = dataclasses.field(
        default_factory=lambda: [64, 64],
        metadata={"help": "hidden layers of the mlp policy (policy: mlp, no model passed in)"})
    hidden_size: int = dataclasses.field(
        default=256,
        metadata={
            "help": "width of the DrivingVLA built for policy: driving_vla (no model "
                    "passed in)"
        })

    def _check_build_options(self) -> None:
        if self.policy not in POLICIES:
            raise ValueError(f"policy must be one of {', '.join(POLICIES)}, got {self.policy!r}")
        if self.hidden_size < 1:
            raise ValueError(f"hidden_size must be >= 1, got {self.hidden_size}")
        if not self.net_arch or any(w < 1 for w in self.net_arch):
            raise ValueError(f"net_arch must be one or more positive layer widths, got "
                             f"{self.net_arch}")
        # Each policy reads one of the two size settings; the other would do nothing.
        if self.policy == "driving_vla" and changed_from_default(self, "net_arch"):
            raise ValueError(f"net_arch={self.net_arch} sets the layers of the mlp policy; "
                             f"policy driving_vla builds a DrivingVLA, sized by hidden_size")
        if self.policy == "mlp" and changed_from_default(self, "hidden_size"):
            raise ValueError(f"hidden_size={self.hidden_size} sizes the DrivingVLA of policy "
                             f"driving_vla; the mlp policy's layers are net_arch")


def _default(config: Any, name: str) -> Any:
    f = {f.name: f for f in dataclasses.fields(config)}[name]
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def changed_from_default(config: Any, name: str) -> bool:
    """Whether dataclass ``config``'s field ``name`` holds other than its default: how a
    setting that may only apply sometimes is told to be set (see ``inapplicable_options``)."""
    return bool(getattr(config, name) != _default(config, name))


def inapplicable_options(config: AlgorithmConfig, model_given: bool, env_given: bool) -> list[str]:
    """Why each build option set in ``config`` cannot apply to the given model/env (empty if
    none). A value equal to the default counts as not set: seed 001's configs and configs
    saved before this check hold the defaults, and must keep working and resuming.
    ``policy: driving_vla`` agrees with a given model (always a DrivingVLA), so it passes."""
    if not isinstance(config, BuildOptions):
        return []
    name = type(config).__name__
    problems = []
    if env_given and changed_from_default(config, "env_id"):
        problems.append(f"{name}.env_id={config.env_id!r} names an env to build, but an env was "
                        f"passed in and is the one trained on; remove env_id")
    if model_given:
        if config.policy != "driving_vla" and changed_from_default(config, "policy"):
            problems.append(f"{name}.policy={config.policy!r} chooses a policy to build, but a "
                            f"DrivingVLA model was passed in and is the one trained; remove "
                            f"policy")
        for option, why in (("net_arch", "the mlp policy's layers"),
                            ("hidden_size", "the width of a DrivingVLA to build")):
            if changed_from_default(config, option):
                problems.append(f"{name}.{option}={getattr(config, option)!r} sets {why}, but a "
                                f"model was passed in and its own config fixes its size; remove "
                                f"{option}")
    return problems
