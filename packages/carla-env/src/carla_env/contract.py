"""The Gymnasium contract both backends share: spaces, state features and info keys.

A policy trained on one backend sees the same spaces on the other, and one reward function
reads the same ``info`` keys from both.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from carla_env.config import SimulatorConfig

__all__ = [
    "ACTION_NAMES", "INFO_KEYS", "NEIGHBOR_FEATURES", "STATE_FEATURES", "DrivingEnv",
    "action_space", "check_action", "observation_space"
]

ACTION_NAMES = ("throttle", "steer", "brake")
STATE_FEATURES = (
    "speed",  # m/s / speed limit
    "lane_offset",  # m from the nearest lane centre / half a lane
    "heading_error",  # rad, ego heading minus route heading
    "last_throttle",
    "last_steer",
    "last_brake",
    "route_progress",  # fraction of the route done
    "distance_to_end",  # m / 1000
    "lane_index",  # 0 = rightmost, / (lanes - 1)
    "road_offset",  # m from the road's centre / road half width
    "curvature_10m",  # 1/m * 10, route curvature 10 m ahead
    "curvature_25m",
    "curvature_50m",
    "stop_line_distance",  # m / 50, 1 if none within 50 m
    "signal",  # 0 green or none, 0.5 yellow, 1 red
    "speed_limit",  # m/s / 30
)
NEIGHBOR_FEATURES = ("dx", "dy", "dvx", "dvy", "cos_yaw", "sin_yaw", "present")
# Keys every step's info carries, on both backends.
INFO_KEYS = (
    "velocity",  # m/s
    "progress",  # m advanced along the route this step
    "route_progress",  # fraction of the route done
    "lane_deviation",  # m from the nearest lane centre
    "heading_error",  # rad
    "collision",
    "off_road",
    "lane_invasion",  # crossed a lane marking this step
    "red_light",  # crossed a stop line on red this step
    "must_stop",  # a red light or a stopped car ahead makes standing still correct
    "route_completed",
    "jerk",  # m/s^3
    "steer_change",  # |steer - previous steer|
)


def action_space() -> spaces.Box:
    """``[throttle, steer, brake]``: throttle and brake in [0, 1], steer in [-1, 1]."""
    return spaces.Box(low=np.array([0.0, -1.0, 0.0], np.float32),
                      high=np.array([1.0, 1.0, 1.0], np.float32),
                      dtype=np.float32)


def observation_space(cfg: SimulatorConfig) -> spaces.Dict:
    """The observation keys ``cfg.observation_keys`` selects, in that order."""
    parts: dict[str, spaces.Space] = {
        "camera":
            spaces.Box(0, 255, (cfg.image_height, cfg.image_width, 3), np.uint8),
        "state":
            spaces.Box(-np.inf, np.inf, (len(STATE_FEATURES),), np.float32),
        "neighbors":
            spaces.Box(-np.inf, np.inf, (cfg.neighbors, len(NEIGHBOR_FEATURES)), np.float32),
    }
    return spaces.Dict({key: parts[key] for key in cfg.observation_keys})


def check_action(action: np.ndarray, batch: int | None = None) -> np.ndarray:
    """Validate and clip actions; raise ``ValueError`` naming the problem."""
    array = np.asarray(action, dtype=np.float32)
    shape = (3,) if batch is None else (batch, 3)
    if array.shape != shape:
        raise ValueError(f"action must have shape {shape} ([throttle, steer, brake]), "
                         f"got {array.shape}")
    if not np.isfinite(array).all():
        bad = sorted({ACTION_NAMES[i] for i in np.argwhere(~np.isfinite(array))[:, -1]})
        raise ValueError(f"action has NaN or infinite values in {', '.join(bad)}")
    low, high = action_space().low, action_space().high
    return np.clip(array, low, high)


class DrivingEnv(gym.Env):
    """What every single driving env shares: its spaces from the config, rgb_array renders."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}  # noqa: RUF012

    def _setup(self, config: SimulatorConfig, render_mode: str | None) -> None:
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.config = config
        self.render_mode = render_mode
        self.observation_space: spaces.Dict = observation_space(config)
        self.action_space: spaces.Box = action_space()
        self.metadata = {**self.metadata, "render_fps": config.fps}
