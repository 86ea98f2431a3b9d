"""Factories behind the registered ids, choosing the backend from the config."""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from carla_env.config import SimulatorConfig

__all__ = ["ENV_ID", "PORT_STRIDE", "make_env", "make_vector_env"]

ENV_ID = "trainyard/Driving-v0"
PORT_STRIDE = 4  # a CARLA server uses its RPC port and the next one for streaming


def make_env(config: SimulatorConfig | None = None, **kwargs: Any) -> gym.Env:
    """A single driving env on ``config.backend``."""
    backend = (config or SimulatorConfig()).backend
    if backend == "embedded":
        from carla_env.embedded import EmbeddedDrivingEnv

        return EmbeddedDrivingEnv(config, **kwargs)
    from carla_env.carla_backend import CarlaDrivingEnv

    return CarlaDrivingEnv(config, **kwargs)


def make_vector_env(num_envs: int = 16,
                    config: SimulatorConfig | None = None,
                    **kwargs: Any) -> gym.vector.VectorEnv:
    """``num_envs`` embedded worlds stepped as one batch, or CARLA servers in subprocesses.

    CARLA: each env connects to its own server on ``carla_port + 4 * i`` (see
    ``carla-server start --count``); Gymnasium's ``AsyncVectorEnv`` runs them in parallel.
    """
    cfg = config or SimulatorConfig()
    if cfg.backend == "embedded":
        from carla_env.embedded import EmbeddedVectorEnv

        return EmbeddedVectorEnv(num_envs, cfg, **kwargs)
    import dataclasses

    from carla_env.carla_backend import CarlaDrivingEnv

    def factory(i: int) -> Any:
        port_cfg = dataclasses.replace(cfg,
                                       carla_port=cfg.carla_port + PORT_STRIDE * i,
                                       traffic_manager_port=cfg.traffic_manager_port + i,
                                       seed=cfg.seed + i)
        return lambda: CarlaDrivingEnv(port_cfg, **kwargs)

    return gym.vector.AsyncVectorEnv([factory(i) for i in range(num_envs)],
                                     autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
