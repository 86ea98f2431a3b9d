"""Episodes on held-out seeds, for a trained policy and for baselines beside it."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable
from typing import Any

import gymnasium as gym
import numpy as np

__all__ = ["Policy", "random_policy", "run_episodes", "summarize"]

Policy = Callable[[Any], Any]


def random_policy(env: gym.Env, seed: int) -> Policy:
    """Uniform random actions from ``env``'s action space, reproducible from ``seed``."""
    space = env.action_space
    space.seed(seed)
    return lambda _obs: space.sample()


def run_episodes(env_id: str, make_policy: Callable[[gym.Env], Policy],
                 seeds: Iterable[int]) -> list[dict[str, float]]:
    """Play one episode per seed; each episode's return and length."""
    env = gym.make(env_id)
    policy = make_policy(env)
    episodes = []
    try:
        for seed in seeds:
            obs, _ = env.reset(seed=int(seed))
            total, length, done = 0.0, 0, False
            while not done:
                obs, reward, terminated, truncated, _ = env.step(policy(obs))
                total += float(reward)
                length += 1
                done = terminated or truncated
            episodes.append({"seed": int(seed), "return": total, "length": float(length)})
    finally:
        env.close()
    return episodes


def summarize(name: str, episodes: list[dict[str, float]]) -> dict[str, Any]:
    """One table row: mean and spread of returns and lengths."""
    returns = [e["return"] for e in episodes]
    return {
        "policy": name,
        "episodes": len(episodes),
        "mean_return": float(np.mean(returns)),
        "std_return": float(statistics.pstdev(returns)) if len(returns) > 1 else 0.0,
        "min_return": float(np.min(returns)),
        "mean_length": float(np.mean([e["length"] for e in episodes])),
    }
