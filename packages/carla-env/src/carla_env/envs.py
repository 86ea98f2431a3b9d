"""Factories behind the registered ids, choosing the backend from the config."""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from carla_env.config import SimulatorConfig

__all__ = ["ENV_ID", "make_env", "make_vector_env"]

ENV_ID = "trainyard/Driving-v0"


def make_env(config: SimulatorConfig | None = None, **kwargs: Any) -> gym.Env:
    """A single driving env on ``config.backend``."""
    backend = (config or SimulatorConfig()).backend
    if backend == "embedded":
        from carla_env.embedded import EmbeddedDrivingEnv

        return EmbeddedDrivingEnv(config, **kwargs)
    raise ValueError(f"backend {backend!r} has no single-env factory; expected 'embedded'")


def make_vector_env(num_envs: int = 16,
                    config: SimulatorConfig | None = None,
                    **kwargs: Any) -> gym.vector.VectorEnv:
    """``num_envs`` embedded worlds stepped as one batch."""
    from carla_env.embedded import EmbeddedVectorEnv

    return EmbeddedVectorEnv(num_envs, config, **kwargs)
