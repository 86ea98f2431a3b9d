"""Batched closed-loop evaluation of the autopilot and a random policy on seeded episodes."""

from __future__ import annotations

from typing import Any

import numpy as np

from carla_env.config import SimulatorConfig
from carla_env.embedded import EmbeddedVectorEnv

__all__ = ["OUTCOMES", "evaluate_baseline"]

OUTCOMES = ("route_completed", "collision", "off_road", "timeout")


def evaluate_baseline(config: SimulatorConfig,
                      policy: str,
                      episodes: int = 100,
                      seed: int = 10_000) -> dict[str, Any]:
    """Run ``episodes`` worlds (one episode each) under ``policy`` (autopilot or random).

    Returns the share of episodes ending in each outcome, the mean route progress and speed.
    """
    if policy not in ("autopilot", "random"):
        raise ValueError(f"policy must be autopilot or random, got {policy!r}")
    envs = EmbeddedVectorEnv(episodes, config)
    envs.reset(seed=seed)
    rng = np.random.default_rng(seed)
    outcome = np.full(episodes, "", dtype=object)
    progress = np.zeros(episodes)
    speed_sum, steps = np.zeros(episodes), np.zeros(episodes)
    for _ in range(config.max_episode_steps):
        running = outcome == ""
        if policy == "autopilot":
            actions = envs.autopilot()
        else:
            space = envs.single_action_space
            actions = rng.uniform(space.low, space.high, (episodes, 3)).astype(np.float32)
        _, _, _, truncated, info = envs.step(actions)
        progress = np.where(running, info["route_progress"], progress)
        speed_sum += np.where(running, info["velocity"], 0.0)
        steps += running
        for name in OUTCOMES[:3]:
            outcome[running & info[name]] = name
        outcome[running & truncated & (outcome == "")] = "timeout"
        if (outcome != "").all():
            break
    outcome[outcome == ""] = "timeout"
    result: dict[str, Any] = {"policy": policy, "episodes": episodes}
    result |= {name: float(np.mean(outcome == name)) for name in OUTCOMES}
    result["route_progress"] = float(np.mean(np.where(outcome == "route_completed", 1.0, progress)))
    result["mean_speed"] = float(np.sum(speed_sum) / max(1.0, np.sum(steps)))
    return result
