"""Driving reward from ``info``, one definition for both backends.

Progress along the route is rewarded, not speed: driving in circles, weaving and standing
still earn nothing (or cost), the gaming reported again and again for continuous-action
drivers rewarded on raw speed.

The weights are ``SimulatorConfig.reward`` (``sim.reward.*`` in a training YAML). Seed 001's
``CARLARewardWrapper`` keys are accepted as aliases (trainyard_core's field aliases, so in YAML,
overrides, flags and as keywords): ``speed_weight`` (= ``progress``), ``lane_weight``
(= ``lane_keeping``) and ``collision_penalty`` (= ``collision``); ``target_speed`` is a field of
its own (the seed's speed reward, peaked at that speed).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np

from trainyard_core.config import accepts_aliases

__all__ = ["DrivingReward", "RewardConfig", "compute_reward"]


@accepts_aliases
@dataclasses.dataclass
class RewardConfig:
    """Weights of the reward terms (seed 001's components plus anti-gaming terms).

    ``lane_width`` and ``speed_scale`` left at None are the backend's: the embedded map's lane
    width, and the metres driven in one control step at the speed limit (or at
    ``target_speed``), so that driving at that speed earns ``progress`` per step.
    """

    progress: float = dataclasses.field(default=1.0,
                                        metadata={
                                            "help": "weight of route progress",
                                            "aliases": ("speed_weight",)
                                        })
    lane_keeping: float = dataclasses.field(default=0.1,
                                            metadata={
                                                "help": "times (lane deviation / half lane)^2",
                                                "aliases": ("lane_weight",)
                                            })
    collision: float = dataclasses.field(default=10.0,
                                         metadata={
                                             "help": "penalty of a collision",
                                             "aliases": ("collision_penalty",)
                                         })
    off_road: float = 10.0
    red_light: float = 5.0
    comfort: float = dataclasses.field(default=0.02, metadata={"help": "times min(|jerk| / 10, 1)"})
    weaving: float = dataclasses.field(default=0.1, metadata={"help": "times |steer change|"})
    idle: float = dataclasses.field(
        default=0.05, metadata={"help": "per step standing still when nothing requires it"})
    target_speed: float | None = dataclasses.field(
        default=None,
        metadata={
            "help": "m/s (seed 001's key): progress at this speed earns 1 per step, faster "
                    "earns less (seed 001's 1 - |v - target| / target), 0 at twice it; "
                    "None = the speed limit, no penalty above it"
        })
    lane_width: float | None = dataclasses.field(default=None,
                                                 metadata={"help": "metres (None = the map's)"})
    speed_scale: float | None = dataclasses.field(
        default=None,
        metadata={
            "help": "metres per step that earn a progress reward of 1 (None = target_speed "
                    "or the speed limit times control_dt)"
        })

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is not None and (isinstance(value, bool) or value < 0):
                raise ValueError(f"reward weight {f.name} must be a number >= 0, got {value!r}")
        for name in ("target_speed", "lane_width", "speed_scale"):
            if getattr(self, name) == 0:
                raise ValueError(f"reward {name} must be > 0 (or None), got 0")

    def resolve(self, lane_width: float, speed_limit: float, control_dt: float) -> RewardConfig:
        """A copy with ``lane_width`` and ``speed_scale`` filled in from the backend."""
        speed = self.target_speed if self.target_speed is not None else speed_limit
        return dataclasses.replace(
            self,
            lane_width=self.lane_width if self.lane_width is not None else lane_width,
            speed_scale=self.speed_scale if self.speed_scale is not None else speed * control_dt)


def compute_reward(info: Mapping[str, Any], cfg: RewardConfig) -> np.ndarray:
    """Reward for one step (scalars) or a batch (arrays) of ``info``."""
    get = lambda key: np.asarray(info[key], dtype=np.float64)  # noqa: E731
    lane_width = cfg.lane_width if cfg.lane_width is not None else 3.5
    deviation = get("lane_deviation") / (lane_width / 2)
    idle = (get("velocity") < 0.5) & ~np.asarray(info["must_stop"], dtype=bool)
    if cfg.speed_scale is not None:
        scale = cfg.speed_scale
    else:  # unresolved: CARLA's default control step of 0.1 s
        scale = (cfg.target_speed if cfg.target_speed is not None else 30.0) * 0.1
    speed = get("progress") / scale
    if cfg.target_speed is not None:
        # seed 001: 1 - |v - target| / target, floored at 0 above the target; below it the
        # progress ratio (equal on the route, and still negative when driving backwards).
        speed = np.where(speed <= 1.0, speed, np.maximum(0.0, 2.0 - speed))
    return (cfg.progress * speed - cfg.lane_keeping * deviation**2 -
            cfg.collision * get("collision") - cfg.off_road * get("off_road") -
            cfg.red_light * get("red_light") -
            cfg.comfort * np.minimum(np.abs(get("jerk")) / 10, 1) -
            cfg.weaving * get("steer_change") - cfg.idle * idle)


class DrivingReward(gym.Wrapper):
    """Replace a driving env's reward with ``compute_reward`` under custom weights.

    Unset ``lane_width``/``speed_scale`` are resolved from the env's ``SimulatorConfig``
    (its scenario's lane width and speed limit, its control step) when it has one.
    """

    def __init__(self, env: gym.Env, config: RewardConfig | None = None) -> None:
        super().__init__(env)
        config = config or RewardConfig()
        sim = getattr(env.unwrapped, "config", None)
        spec = getattr(sim, "scenario_spec", None)
        if sim is not None and spec is not None:
            config = config.resolve(spec.lane_width, spec.speed_limit, sim.control_dt)
        self.config = config

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, _, terminated, truncated, info = self.env.step(action)
        return obs, float(compute_reward(info, self.config)), terminated, truncated, info
