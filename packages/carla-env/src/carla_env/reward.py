"""Driving reward from ``info``, one definition for both backends.

Progress along the route is rewarded, not speed: driving in circles, weaving and standing
still earn nothing (or cost), the gaming reported again and again for continuous-action
drivers rewarded on raw speed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np

__all__ = ["DrivingReward", "RewardConfig", "compute_reward"]


@dataclasses.dataclass
class RewardConfig:
    """Weights of the reward terms (seed 001's components plus anti-gaming terms)."""

    progress: float = 1.0  # per route metre, scaled so the speed limit earns ~1 per step
    lane_keeping: float = 0.1  # times (lane deviation / half lane)^2
    collision: float = 10.0
    off_road: float = 10.0
    red_light: float = 5.0
    comfort: float = 0.02  # times min(|jerk| / 10, 1)
    weaving: float = 0.1  # times |steer change|
    idle: float = 0.05  # per step standing still when nothing requires it
    lane_width: float = 3.5
    speed_scale: float = 3.0  # metres per step that earn a progress reward of 1

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            if getattr(self, f.name) < 0:
                raise ValueError(
                    f"reward weight {f.name} must be >= 0, got {getattr(self, f.name)}")


def compute_reward(info: Mapping[str, Any], cfg: RewardConfig) -> np.ndarray:
    """Reward for one step (scalars) or a batch (arrays) of ``info``."""
    get = lambda key: np.asarray(info[key], dtype=np.float64)  # noqa: E731
    deviation = get("lane_deviation") / (cfg.lane_width / 2)
    idle = (get("velocity") < 0.5) & ~np.asarray(info["must_stop"], dtype=bool)
    return (cfg.progress * get("progress") / cfg.speed_scale - cfg.lane_keeping * deviation**2 -
            cfg.collision * get("collision") - cfg.off_road * get("off_road") -
            cfg.red_light * get("red_light") -
            cfg.comfort * np.minimum(np.abs(get("jerk")) / 10, 1) -
            cfg.weaving * get("steer_change") - cfg.idle * idle)


class DrivingReward(gym.Wrapper):
    """Replace a driving env's reward with ``compute_reward`` under custom weights."""

    def __init__(self, env: gym.Env, config: RewardConfig | None = None) -> None:
        super().__init__(env)
        self.config = config or RewardConfig()

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, _, terminated, truncated, info = self.env.step(action)
        return obs, float(compute_reward(info, self.config)), terminated, truncated, info
