"""Factories behind the registered ids, choosing the backend from the config."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from carla_env.config import SimulatorConfig

__all__ = ["ENV_ID", "PORT_STRIDE", "ContractInfo", "make_env", "make_vector_env"]

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
    ``carla-server start --count``); Gymnasium's ``AsyncVectorEnv`` runs them in parallel,
    wrapped in ``ContractInfo`` so ``info`` is laid out as the embedded env's.
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

    return ContractInfo(
        gym.vector.AsyncVectorEnv([factory(i) for i in range(num_envs)],
                                  autoreset_mode=gym.vector.AutoresetMode.SAME_STEP), cfg)


class ContractInfo(gym.vector.VectorWrapper):
    """Gymnasium's same-step autoreset info, laid out as ``carla_env.contract`` says.

    Gymnasium's Sync/AsyncVectorEnv put a finished env's step info under
    ``info["final_info"]`` and the reset's info at the top. The contract keeps the event keys
    of the step just taken at the top (as the embedded env does), and the observation keys of
    the new episode: this copies the finished step's keys back up, except the observation
    keys, which stay the reset's. ``final_info`` itself is left as Gymnasium gives it.
    """

    def __init__(self, env: gym.vector.VectorEnv, config: SimulatorConfig) -> None:
        super().__init__(env)
        self.config = config

    def step(
        self, actions: np.ndarray
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        from carla_env.contract import EXPERT_KEY, OBSERVATION_INFO_KEYS

        obs, reward, terminated, truncated, info = self.env.step(actions)
        final = info.get("final_info")
        if not final:
            return obs, reward, terminated, truncated, info
        keep = {*OBSERVATION_INFO_KEYS, EXPERT_KEY}
        done = np.asarray(info["_final_info"], dtype=bool)
        for key, value in final.items():
            if key.startswith("_") or key in keep or isinstance(value, dict):
                continue
            rows = done & final.get(f"_{key}", done)
            if key in info:
                merged = np.array(info[key], copy=True)
                merged[rows] = value[rows]
            else:
                merged = np.array(value, copy=True)
            info[key] = merged
            info[f"_{key}"] = info.get(f"_{key}", np.zeros_like(done)) | rows
        return obs, reward, terminated, truncated, info
