"""The expert finishes its routes without collisions; a random policy does not."""

from __future__ import annotations

import numpy as np
import pytest

from carla_env import SimulatorConfig
from carla_env.embedded import EmbeddedVectorEnv


def _evaluate(scenario: str, policy: str, episodes: int = 100) -> dict[str, float]:
    envs = EmbeddedVectorEnv(episodes, SimulatorConfig(scenario=scenario))
    envs.reset(seed=10_000)
    rng = np.random.default_rng(0)
    outcome = np.full(episodes, "", dtype=object)
    for _ in range(envs.config.max_episode_steps):
        if policy == "autopilot":
            actions = envs.autopilot()
        else:
            actions = rng.uniform(envs.action_space.low, envs.action_space.high).astype(np.float32)
        _, _, _, truncated, info = envs.step(actions)
        for name in ("collision", "off_road", "route_completed"):
            newly = info[name] & (outcome == "")
            outcome[newly] = name
        outcome[truncated & (outcome == "")] = "timeout"
        if (outcome != "").all():
            break
    return {
        name: float(np.mean(outcome == name))
        for name in ("route_completed", "collision", "off_road", "timeout")
    }


@pytest.mark.parametrize(("scenario", "goal"), [("highway", 0.95), ("urban", 0.90)])
def test_autopilot_completes_routes_without_collision(scenario: str, goal: float) -> None:
    expert = _evaluate(scenario, "autopilot")
    random = _evaluate(scenario, "random")
    print(f"{scenario}: autopilot {expert}, random {random}")
    assert expert["route_completed"] >= goal
    assert expert["collision"] + expert["off_road"] <= 1 - goal
    assert random["route_completed"] < 0.05
