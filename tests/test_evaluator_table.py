"""The one evaluator gives today's closed-loop table on the embedded backend.

``carla_env.evaluation`` replaced ``trainers_rl.closed_loop``'s embedded-only evaluator, which
read the world's arrays. These rows must stay the ones that evaluator gave: same seeds, same
figures for the autopilot, the random baseline and a fixed DrivingVLA policy.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from carla_env import SimulatorConfig
from carla_env.evaluation import (
    EVAL_FORMAT,
    BatchPolicy,
    autopilot_policy,
    evaluate_policies,
    random_policy,
)
from driving_vla import DrivingVLA, DrivingVLAConfig

EPISODES = 50
SEED = 1_000_000
# Produced at commit e919310 (before the evaluator moved) by running, with
# torch.set_num_threads(1), trainers_rl.closed_loop.evaluate_policies(
#     SimulatorConfig(scenario=..., route_length=200.0, max_episode_steps=400),
#     {"autopilot": autopilot_policy(), "random": random_policy(0),
#      "model": model_policy(fixed_model(), "controls")}, episodes=50, seed=1_000_000)
# and pasting the rows it returned.
TODAY: dict[str, list[dict[str, Any]]] = {
    "highway": [
        {
            "policy": 'autopilot',
            "episodes": 50,
            "collision_free": 1.0,
            "route_completion": 1.0,
            "completed": 1.0,
            "collisions_per_km": 0.0,
            "off_road": 0,
            "lane_invasions": 0,
            "km_driven": 9.556457047994906,
            "mean_speed_mps": 19.18207120804887,
            "mean_abs_jerk": 0.35235053624796364,
        },
        {
            "policy": 'random',
            "episodes": 50,
            "collision_free": 0.86,
            "route_completion": 0.15584307382974863,
            "completed": 0.0,
            "collisions_per_km": 5.3499201716311795,
            "off_road": 29,
            "lane_invasions": 56,
            "km_driven": 1.3084307382974865,
            "mean_speed_mps": 2.0358067655819587,
            "mean_abs_jerk": 15.266627759349543,
        },
        {
            "policy": 'model',
            "episodes": 50,
            "collision_free": 0.92,
            "route_completion": 0.13235305841660708,
            "completed": 0.0,
            "collisions_per_km": 3.726023328070563,
            "off_road": 45,
            "lane_invasions": 54,
            "km_driven": 1.0735305841660712,
            "mean_speed_mps": 7.634542475043824,
            "mean_abs_jerk": 0.9247950475040321,
        },
    ],
    "urban": [
        {
            "policy": 'autopilot',
            "episodes": 50,
            "collision_free": 1.0,
            "route_completion": 0.9842472500137768,
            "completed": 0.88,
            "collisions_per_km": 0.0,
            "off_road": 0,
            "lane_invasions": 0,
            "km_driven": 9.394069893364604,
            "mean_speed_mps": 6.114035009655476,
            "mean_abs_jerk": 0.9160959550724488,
        },
        {
            "policy": 'random',
            "episodes": 50,
            "collision_free": 0.9,
            "route_completion": 0.07239529631370356,
            "completed": 0.0,
            "collisions_per_km": 10.54957008160815,
            "off_road": 11,
            "lane_invasions": 9,
            "km_driven": 0.4739529631370355,
            "mean_speed_mps": 0.3262802260621828,
            "mean_abs_jerk": 12.290430959013225,
        },
        {
            "policy": 'model',
            "episodes": 50,
            "collision_free": 0.96,
            "route_completion": 0.11188966931209364,
            "completed": 0.0,
            "collisions_per_km": 2.30176960717427,
            "off_road": 20,
            "lane_invasions": 14,
            "km_driven": 0.8688966931209363,
            "mean_speed_mps": 0.6726192939936093,
            "mean_abs_jerk": 0.12452632038977063,
        },
    ],
}


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    # One thread: the figures were recorded so, and a tiny model gains nothing from more.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def fixed_model() -> DrivingVLA:
    """A small DrivingVLA with the weights torch.manual_seed(0) gives."""
    torch.manual_seed(0)
    model = DrivingVLA(DrivingVLAConfig(observation_keys=["state", "neighbors"], hidden_size=32))
    return model.eval()


def control_head(model: DrivingVLA) -> BatchPolicy:
    """The model's control head as a batch policy (it reads observations only)."""

    def act(obs: dict[str, np.ndarray], info: dict[str, Any]) -> np.ndarray:
        with torch.no_grad():
            return model.act(obs).float().cpu().numpy()

    return act


@pytest.mark.parametrize("scenario", sorted(TODAY))
def test_rows_equal_todays_closed_loop_table(scenario: str, tmp_path: Path) -> None:
    sim = SimulatorConfig(scenario=scenario, route_length=200.0, max_episode_steps=400)
    policies = {
        "autopilot": autopilot_policy(),
        "random": random_policy(0),
        "model": control_head(fixed_model()),
    }
    rows = evaluate_policies(sim, policies, episodes=EPISODES, seed=SEED, out_dir=tmp_path)
    for row, expected in zip(rows, TODAY[scenario], strict=True):
        assert row == expected, row["policy"]
    report = json.loads((tmp_path / "eval.json").read_text())
    assert report["format"] == EVAL_FORMAT == "trainyard-closed-loop/1"
    assert report["env_seeds"] == [SEED, SEED + EPISODES - 1]
    assert [p["policy"] for p in report["policies"]] == list(policies)
    seeds = [e["seed"] for e in report["policies"][0]["per_episode"]]
    assert seeds == list(range(SEED, SEED + EPISODES))
