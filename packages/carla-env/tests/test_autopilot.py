"""The expert finishes its routes without collisions; a random policy does not."""

from __future__ import annotations

from pathlib import Path

import pytest

from carla_env import SimulatorConfig
from carla_env.cli import main
from carla_env.evaluate import evaluate_baseline


@pytest.mark.parametrize(("scenario", "goal"), [("highway", 0.95), ("urban", 0.90)])
def test_autopilot_completes_routes_without_collision(scenario: str, goal: float) -> None:
    cfg = SimulatorConfig(scenario=scenario)
    expert = evaluate_baseline(cfg, "autopilot", episodes=100)
    random = evaluate_baseline(cfg, "random", episodes=100)
    print(f"{scenario}: autopilot {expert}, random {random}")
    assert expert["route_completed"] >= goal
    assert expert["collision"] + expert["off_road"] <= 1 - goal
    assert random["route_completed"] < 0.05


def test_baselines_command_prints_table_and_video(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    video = tmp_path / "episode.gif"
    assert main([
        "baselines", "--episodes", "4", "--video",
        str(video), "route_length=120", "--scenario", "urban"
    ]) == 0
    out = capsys.readouterr().out
    assert "autopilot" in out and "random" in out and "route_completed" in out
    assert video.stat().st_size > 10_000
