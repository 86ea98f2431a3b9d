"""``CARLABridge``: seed 001's name for a driving env over the configured backend.

``CARLABridge(SimulatorConfig(...))`` then ``initialize()`` is how seed 001 opens its
simulator; here it is the ``trainyard/Driving-v0`` env on ``config.backend`` (the embedded
simulator by default, a CARLA server with ``backend="carla"``). The spaces exist before
``initialize()`` (they follow from the config alone), so a trainer or model can be built
first; the backend, and a CARLA connection, only when ``initialize()`` (or ``reset()``) runs.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from carla_env.config import SimulatorConfig
from carla_env.contract import DrivingEnv
from carla_env.reward import RewardConfig

__all__ = ["CARLABridge"]


class CARLABridge(DrivingEnv):
    """A single driving env on ``config.backend``, opened by ``initialize()``."""

    def __init__(self,
                 config: SimulatorConfig | None = None,
                 render_mode: str | None = None,
                 reward: RewardConfig | None = None) -> None:
        if config is not None and not isinstance(config, SimulatorConfig):
            raise TypeError(f"CARLABridge takes a SimulatorConfig, got {type(config).__name__}")
        self._setup(config or SimulatorConfig(), render_mode)
        self._reward = reward
        self.env: gym.Env | None = None

    def initialize(self) -> CARLABridge:
        """Open the backend (connects to the CARLA server on that backend); idempotent."""
        if self.env is None:
            from carla_env.envs import make_env

            self.env = make_env(self.config, render_mode=self.render_mode, reward=self._reward)
        return self

    @property
    def initialized(self) -> bool:
        return self.env is not None

    def _opened(self) -> gym.Env:
        if self.env is None:
            raise RuntimeError("CARLABridge: call initialize() (or reset()) before step()")
        return self.env

    def reset(self,
              *,
              seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[dict[str, np.ndarray], dict]:
        super().reset(seed=seed)
        return self.initialize()._opened().reset(seed=seed, options=options)

    def step(self, action: np.ndarray) -> tuple[dict[str, np.ndarray], float, bool, bool, dict]:
        obs, reward, terminated, truncated, info = self._opened().step(action)
        return obs, float(reward), terminated, truncated, info

    def render(self) -> Any:
        return self._opened().render()

    def autopilot(self) -> np.ndarray:
        """The backend's expert action (embedded backend)."""
        env = self._opened()
        if not hasattr(env, "autopilot"):
            raise TypeError(f"the {self.config.backend} backend has no autopilot")
        return env.autopilot()

    def close(self) -> None:
        if self.env is not None:
            self.env.close()
            self.env = None
