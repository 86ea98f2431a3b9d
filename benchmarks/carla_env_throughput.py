"""Embedded driving simulator throughput and memory, beside highway-env in the same run.

Figures: env-steps/s with random actions for batched `state`+`neighbors` observations, for
a 64x64 `camera`, and for a single env; highway-env's `highway-fast-v0` (the usual light
alternative) as the anchor when it is installed; memory per world in the batch, and its
growth over 1,000 resets of the whole batch. Run: nox -s bench (or python this file).
"""

from __future__ import annotations

import argparse
import gc
import time
from pathlib import Path

import gymnasium as gym
import numpy as np

from carla_env import ENV_ID, SimulatorConfig
from carla_env.embedded import EmbeddedVectorEnv
from trainyard_core.table import print_table


def _rss_mib() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * 4096 / 2**20


def _random_actions(space: gym.Space, count: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.uniform(space.low, space.high).astype(np.float32) for _ in range(count)]


def batched(num_envs: int, keys: list[str], steps: int) -> float:
    envs = EmbeddedVectorEnv(num_envs, SimulatorConfig(observation_keys=keys))
    envs.reset(seed=0)
    actions = _random_actions(envs.action_space, 8)
    for a in actions[:3]:  # warm-up
        envs.step(a)
    start = time.perf_counter()
    for i in range(steps):
        envs.step(actions[i % len(actions)])
    return num_envs * steps / (time.perf_counter() - start)


def single(steps: int) -> float:
    env = gym.make(ENV_ID)
    env.reset(seed=0)
    actions = _random_actions(env.action_space, 64)
    start = time.perf_counter()
    for i in range(steps):
        _, _, terminated, truncated, _ = env.step(actions[i % len(actions)])
        if terminated or truncated:
            env.reset()
    return steps / (time.perf_counter() - start)


def highway_env(steps: int) -> float | None:
    try:
        import highway_env  # noqa: F401
    except ImportError:
        return None
    env = gym.make("highway-fast-v0")
    env.reset(seed=0)
    start = time.perf_counter()
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()
    return steps / (time.perf_counter() - start)


def memory(num_envs: int, resets: int) -> tuple[float, float]:
    """MiB per world, and MiB the process grew over ``resets`` resets of the batch."""
    gc.collect()
    before = _rss_mib()
    envs = EmbeddedVectorEnv(num_envs, SimulatorConfig(observation_keys=["state", "neighbors"]))
    envs.reset(seed=0)
    action = _random_actions(envs.action_space, 1)[0]
    for _ in range(20):
        envs.step(action)
    gc.collect()
    after_start = _rss_mib()
    for i in range(resets):
        envs.reset(seed=i)
        envs.step(action)
    gc.collect()
    return (after_start - before) / num_envs, _rss_mib() - after_start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=200, help="batched steps per measurement")
    args = parser.parse_args()
    rows = []
    for n in (256, 1024, 4096):
        rows.append({
            "run": f"embedded, state+neighbors, N={n}",
            "env_steps_per_s": batched(n, ["state", "neighbors"], args.steps)
        })
    for n in (256, 1024):
        rows.append({
            "run": f"embedded, camera 64x64, N={n}",
            "env_steps_per_s": batched(n, ["camera"], max(20, args.steps // 4))
        })
    rows.append({"run": "embedded, single env (N=1)", "env_steps_per_s": single(2000)})
    anchor = highway_env(300)
    rows.append({
        "run": "highway-env highway-fast-v0 (anchor)",
        "env_steps_per_s": anchor if anchor is not None else "not installed"
    })
    if anchor:
        best = max(r["env_steps_per_s"] for r in rows[:3])
        rows.append({"run": "best batched / highway-fast-v0", "env_steps_per_s": best / anchor})
    print_table("carla-env embedded simulator, random actions, this machine", rows)
    per_env, growth = memory(4096, 1000)
    print_table("memory", [{
        "measure": "MiB per world (N=4096, state+neighbors)",
        "value": per_env
    }, {
        "measure": "RSS growth over 1,000 resets of the batch, MiB",
        "value": growth
    }])


if __name__ == "__main__":
    main()
