"""``SACTrainingConfig``: SAC hyper-parameters, defaults chosen for the embedded driving env;
``SACConfig``: those and what to build when no model or env is passed in (``BuildOptions``)."""

from __future__ import annotations

import dataclasses
import math

from carla_env import ENV_ID
from trainers_rl.rl.config import AlgorithmConfig, BuildOptions

__all__ = ["SACConfig", "SACTrainingConfig", "parse_ent_coef"]


def parse_ent_coef(value: float | str, name: str = "ent_coef") -> float | str:
    """``value`` in the form SB3 takes: a positive float, ``auto`` or ``auto_<initial>``.

    Raises ``ValueError`` naming ``name`` otherwise, before SB3 would (with an assert or
    a bare float() error, deep inside model construction).
    """
    text = str(value).strip()
    if text == "auto":
        return text
    auto = text.startswith("auto_")
    try:
        number = float(text[len("auto_"):] if auto else text)
    except ValueError:
        number = math.nan
    if isinstance(value, bool) or not 0 < number < math.inf:
        raise ValueError(f"{name} must be a positive number, 'auto' or 'auto_<initial value>', "
                         f"got {value!r}")
    return text if auto else number


@dataclasses.dataclass
class SACTrainingConfig(AlgorithmConfig):
    """What SAC needs to know, in SB3's names (they are also the SAC paper's).

    A step of ``train_freq`` is one step of the vector env, i.e. ``num_envs`` transitions;
    ``gradient_steps`` updates follow each such collection. The defaults aim at the embedded
    driving env on a CPU, where updates, not the simulator, take the time: one update per
    vector step, and a learned entropy coefficient starting at 0.1 (``auto_0.1``) since the
    reward is at most ~1 per step. SB3's start of 1.0 kept 16 envs near random for 80k steps
    where 0.1 drove (episode reward -86 vs +86 after 80k steps, one seed each).

    These are all a trainer given a model and an env uses (the main job's ``rl.sac``).
    """

    buffer_size: int = dataclasses.field(
        default=200_000,
        metadata={
            "help": "replay buffer transitions (the whole buffer is saved with each "
                    "checkpoint; a 64x64 camera needs ~25 KB per transition)"
        })
    learning_starts: int = dataclasses.field(
        default=5_000, metadata={"help": "env steps of uniform random actions before updates"})
    batch_size: int = 256
    tau: float = dataclasses.field(default=0.005,
                                   metadata={"help": "Polyak coefficient of the target critics"})
    train_freq: int = dataclasses.field(
        default=1,
        metadata={"help": "vector-env steps between updates (num_envs transitions each)"})
    gradient_steps: int = dataclasses.field(
        default=1,
        metadata={"help": "updates after each collection; -1 = one per transition collected"})
    ent_coef: float | str = dataclasses.field(
        default="auto_0.1",
        metadata={
            "help": "entropy coefficient: a number, or learned: auto_<initial> (auto "
                    "starts at 1.0)"
        })
    alpha: float | None = dataclasses.field(
        default=None,
        metadata={
            "help": "seed 001's name for a fixed ent_coef (the SAC paper's alpha); set, it "
                    "becomes ent_coef"
        })
    target_entropy: float | None = dataclasses.field(
        default=None, metadata={"help": "entropy target of auto ent_coef (None = -action_dim)"})
    qf_net_arch: list[int] = dataclasses.field(
        default_factory=lambda: [256, 256],
        metadata={
            "help": "critic hidden layers after DrivingVLA's features (a model passed in, "
                    "or policy: driving_vla); the mlp policy uses net_arch for both"
        })

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("buffer_size", "batch_size", "train_freq"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.learning_starts < 0:
            raise ValueError(f"learning_starts must be >= 0, got {self.learning_starts}")
        if self.gradient_steps < -1:
            raise ValueError(f"gradient_steps must be >= 0 or -1 (one per transition), got "
                             f"{self.gradient_steps}")
        if not 0 < self.tau <= 1:
            raise ValueError(f"tau must be in (0, 1], got {self.tau}")
        if self.batch_size > self.buffer_size:
            raise ValueError(f"batch_size {self.batch_size} exceeds buffer_size "
                             f"{self.buffer_size}")
        if self.alpha is not None:
            alpha = parse_ent_coef(self.alpha, "alpha")
            default = SACTrainingConfig.__dataclass_fields__["ent_coef"].default
            if self.ent_coef not in (default, alpha):
                raise ValueError(f"alpha={self.alpha!r} and ent_coef={self.ent_coef!r} both set: "
                                 f"alpha is seed 001's name for ent_coef, give one")
            self.ent_coef, self.alpha = alpha, None  # one name from here on (and in YAML)
        self.ent_coef = parse_ent_coef(self.ent_coef)
        if self.target_entropy is not None and not math.isfinite(self.target_entropy):
            raise ValueError(f"target_entropy must be a finite number or None (= -action_dim), "
                             f"got {self.target_entropy}")
        if any(w < 1 for w in self.qf_net_arch):
            raise ValueError(f"qf_net_arch must be positive layer widths, got "
                             f"{self.qf_net_arch}")
        if self.log_std_init is not None:
            raise ValueError("log_std_init must be None for SAC: its standard deviation is a "
                             "learned function of the state, not a parameter to initialise")


@dataclasses.dataclass
class SACConfig(SACTrainingConfig, BuildOptions):
    """SAC as a job of its own (``SACTrainer(config)``): the hyper-parameters and what to
    build when no env (``env_id``) or model (``policy``, ``net_arch``, ``hidden_size``) is
    passed in. Given a model or env, build options left at their defaults are fine; others
    are refused (``inapplicable_options``)."""

    env_id: str = dataclasses.field(
        default=ENV_ID,
        metadata={
            "help": "registered Gymnasium id with a Box action space to build (only when no "
                    "env is passed in)"
        })

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_build_options()
