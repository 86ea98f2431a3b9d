"""The Gymnasium contract both backends share: spaces, state features and info keys.

A policy trained on one backend sees the same spaces on the other, one reward function reads
the same ``info`` keys from both, and one evaluator (``carla_env.evaluation``) and one
demonstration recorder need nothing but ``reset``/``step``/``render`` and these keys.

``info`` holds two kinds of keys, and the vector envs (same-step autoreset) keep them apart:

- **event keys** (``INFO_KEYS``) describe the step just taken. When that step ended an
  episode and the env was reset in the same call, they are still the finished episode's
  (its collision, its last speed), which is what rewards and episode metrics need.
  ``reset()`` does not return them.
- **observation keys** (``OBSERVATION_INFO_KEYS``, and ``EXPERT_KEY`` where enabled) describe
  the observation returned with them: after an autoreset, the NEW episode's first one. They
  are returned by ``reset()`` too, so a policy can read them before its first action.

``EXPERT_KEY`` (``expert_action``) is only there when ``SimulatorConfig.expert_action`` is on
(it costs an expert evaluation per step, so training leaves it off) and the backend has an
expert: the embedded backend's autopilot. The CARLA backend has none: the ``carla`` 0.9.16
wheel ships only the client (``carla.libcarla``), not CARLA's ``agents.navigation`` (whose
BasicAgent would give one), so ``expert_action=true`` is refused there.

The ego speed is the event key ``velocity``: for an env that did not just end an episode it
is the speed of the returned observation; after an autoreset it is the finished episode's
last speed (the new episode's is ``state[:, 0] * speed_limit`` where ``state`` is observed).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from carla_env.config import SimulatorConfig

__all__ = [
    "ACTION_NAMES", "EXPERT_BACKENDS", "EXPERT_KEY", "INFO_KEYS", "NEIGHBOR_FEATURES",
    "OBSERVATION_INFO_KEYS", "STATE_FEATURES", "DrivingEnv", "action_space", "check_action",
    "observation_space"
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
# Event keys: every step's info carries them, on both backends; they describe the step just
# taken (after an autoreset, the finished episode's last step).
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
# Observation keys: reset's and every step's info carry them, on both backends; they describe
# the observation returned with them (after an autoreset, the new episode's first).
OBSERVATION_INFO_KEYS = (
    "x",  # m, world frame (x and y as the contract's: y to the left of x)
    "y",  # m
    "yaw",  # rad, counter-clockwise from +x
    "episode_seed",  # int64: the seed the episode was reset with (replays it on embedded)
    "episode_step",  # int64: steps already taken in the episode (0 right after a reset)
)
# The expert's action (float32 [throttle, steer, brake]) for the returned observation, with
# SimulatorConfig.expert_action on a backend in EXPERT_BACKENDS.
EXPERT_KEY = "expert_action"
EXPERT_BACKENDS = ("embedded",)


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
