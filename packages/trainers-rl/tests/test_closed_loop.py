"""Closed-loop evaluation: metrics, seeding, videos, model policies and ``trainers-rl evaluate``."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from carla_env import SimulatorConfig
from carla_env.embedded import EmbeddedVectorEnv
from driving_vla import DrivingVLA, DrivingVLAConfig
from trainers_rl.cli import main
from trainers_rl.evaluation.closed_loop import (
    OUTCOMES,
    autopilot_policy,
    evaluate_closed_loop,
    evaluate_policies,
    model_policy,
    random_policy,
    record_video,
)

SIM = SimulatorConfig(route_length=150.0, max_episode_steps=250)
SEED = 1_000_000
SUMMARY_KEYS = {
    "policy", "episodes", "collision_free", "route_completion", "completed", "collisions_per_km",
    "off_road", "lane_invasions", "km_driven", "mean_speed_mps", "mean_abs_jerk", "per_episode"
}
EPISODE_KEYS = {
    "seed", "outcome", "route_progress", "distance_m", "collisions", "off_road", "lane_invasions",
    "mean_speed_mps", "mean_abs_jerk", "return", "steps"
}


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    # The models here are tiny: thread hand-offs cost more than they save, and on a busy
    # machine they stall (10x slower seen on 2 shared cores).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def autopilot() -> dict[str, Any]:
    return evaluate_closed_loop(SIM, autopilot_policy(), episodes=8, seed=SEED)


def test_autopilot_drives_its_routes_and_random_does_not(autopilot: dict[str, Any]) -> None:
    assert set(autopilot) == SUMMARY_KEYS and autopilot["policy"] == "autopilot"
    assert autopilot["collision_free"] >= 0.9 and autopilot["route_completion"] >= 0.9
    assert autopilot["collisions_per_km"] is not None and autopilot["off_road"] == 0
    assert autopilot["mean_speed_mps"] > 15.0
    episodes = autopilot["per_episode"]
    assert [e["seed"] for e in episodes] == list(range(SEED, SEED + 8))
    assert all(set(e) == EPISODE_KEYS and e["outcome"] in OUTCOMES for e in episodes)
    # Distance driven is the route covered (from 5 m in to 5 m before the end).
    done = [e for e in episodes if e["outcome"] == "route_completed"]
    assert done and all(135.0 < e["distance_m"] < 145.0 for e in done)
    assert autopilot["km_driven"] == pytest.approx(sum(e["distance_m"] for e in episodes) / 1000)
    # Distinct seeds are distinct episodes.
    assert len({(e["steps"], round(e["mean_speed_mps"], 6)) for e in episodes}) > 4

    rand = evaluate_closed_loop(SIM, random_policy(0), episodes=8, seed=SEED)
    assert set(rand) == SUMMARY_KEYS and rand["policy"] == "random"
    assert rand["completed"] == 0.0 and rand["route_completion"] < 0.3
    assert rand["mean_speed_mps"] < 5.0 and rand["mean_abs_jerk"] > autopilot["mean_abs_jerk"]


def test_an_episode_depends_on_its_seed_alone(autopilot: dict[str, Any]) -> None:
    # Episode i of the batch is env seed SEED + i, and what other worlds do after their first
    # episode ended (they keep driving) is never counted.
    for i in (0, 5):
        alone = evaluate_closed_loop(SIM, autopilot_policy(), episodes=1, seed=SEED + i)
        assert alone["episodes"] == 1
        assert alone["per_episode"][0] == autopilot["per_episode"][i]
    again = evaluate_closed_loop(SIM, autopilot_policy(), episodes=8, seed=SEED)
    assert again == autopilot
    rand = [evaluate_closed_loop(SIM, random_policy(7), episodes=3, seed=5) for _ in range(2)]
    assert rand[0] == rand[1]
    other = evaluate_closed_loop(SIM, random_policy(8), episodes=3, seed=5)
    assert other["per_episode"] != rand[0]["per_episode"]


def test_policies_that_end_every_episode_early_stop_the_run() -> None:
    calls = []

    def hard_left(obs: dict[str, np.ndarray], envs: EmbeddedVectorEnv) -> np.ndarray:
        calls.append(1)
        return np.tile(np.array([1.0, 1.0, 0.0], np.float32), (envs.num_envs, 1))

    sim = dataclasses.replace(SIM, max_episode_steps=1000)
    summary = evaluate_closed_loop(sim, hard_left, episodes=3, seed=SEED, name="hard-left")
    assert summary["policy"] == "hard-left" and summary["off_road"] == 3
    steps = [e["steps"] for e in summary["per_episode"]]
    assert all(e["outcome"] == "off_road" for e in summary["per_episode"])
    assert len(calls) == max(steps) < 100  # stopped when the last world went off the road
    assert summary["route_completion"] < 0.2


def test_evaluate_policies_writes_report_and_the_episode_video(tmp_path: Path) -> None:
    policies = {"autopilot": autopilot_policy(), "random": random_policy(1)}
    rows = evaluate_policies(SIM,
                             policies,
                             episodes=2,
                             seed=SEED,
                             out_dir=tmp_path,
                             video_policy="autopilot")
    assert [r["policy"] for r in rows] == ["autopilot", "random"]
    assert all("per_episode" not in r and "video" not in r for r in rows)
    report = json.loads((tmp_path / "eval.json").read_text())
    assert report["env_seeds"] == [SEED, SEED + 1] and set(report["wall_seconds"]) == set(policies)
    first, second = report["policies"]
    assert len(first["per_episode"]) == 2 and "video" not in second
    # The video replays the first seed's episode: one frame before every step but the last.
    frames = iio.imread(tmp_path / "episode.gif", index=None)
    episode = first["per_episode"][0]
    assert first["video"]["steps"] == episode["steps"] == len(frames) > 1
    assert first["video"]["outcome"] == episode["outcome"]
    assert frames.shape[1:] == (256, 256, 3)
    assert not (tmp_path / "episode.mp4").exists()
    with pytest.raises(ValueError, match="not one of"):
        evaluate_policies(SIM, policies, 1, SEED, tmp_path, video_policy="ppo")


def test_random_policy_replays_the_same_episode_alone(tmp_path: Path) -> None:
    batch = evaluate_closed_loop(SIM, random_policy(3), episodes=3, seed=SEED)
    alone = record_video(SIM, random_policy(3), SEED, tmp_path / "random.mp4")
    assert alone == batch["per_episode"][0]
    assert (tmp_path / "random.mp4").stat().st_size > 0


def tiny_model(keys: list[str] | None = None, **config: Any) -> DrivingVLA:
    torch.manual_seed(0)
    return DrivingVLA(
        DrivingVLAConfig(observation_keys=keys or ["state", "neighbors"], hidden_size=32, **config))


def constant_heads(model: DrivingVLA, controls: list[float], speed: float) -> DrivingVLA:
    """Make the heads ignore the input: fixed controls, and waypoints straight at ``speed``."""
    with torch.no_grad():
        model.control_head.weight.zero_()
        model.control_head.bias.copy_(torch.tensor(controls))
        model.waypoint_head.weight.zero_()
        t = torch.arange(1, model.config.trajectory_length + 1, dtype=torch.float32)
        path = torch.stack([speed * 0.5 * t, torch.zeros_like(t)], dim=1)
        model.waypoint_head.bias.copy_(path.reshape(-1))
    return model


def test_model_policies_drive_through_either_head() -> None:
    model = constant_heads(tiny_model(), controls=[0.0, 0.0, 1.0], speed=12.0)
    sim = dataclasses.replace(SIM, traffic_density=0.0, max_episode_steps=200)
    # The control head says brake: the car stops and the episode times out.
    braking = evaluate_closed_loop(sim, model_policy(model, "controls"), episodes=2, seed=SEED)
    assert braking["policy"] == "model-controls"
    assert all(e["outcome"] == "timeout" for e in braking["per_episode"])
    assert braking["mean_speed_mps"] < 2.0
    # The waypoint head says 12 m/s straight on; the controller holds that speed.
    cruising = evaluate_closed_loop(sim, model_policy(model, "waypoints"), episodes=2, seed=SEED)
    assert cruising["policy"] == "model-waypoints"
    assert cruising["mean_speed_mps"] == pytest.approx(12.0, abs=1.0)
    assert cruising["route_completion"] > 0.5
    with pytest.raises(ValueError, match="mode must be"):
        model_policy(model, "steer")


def test_model_policy_names_a_missing_observation() -> None:
    policy = model_policy(tiny_model(["camera", "state"]), "controls")
    with pytest.raises(ValueError, match=r"\['camera'\]"):
        evaluate_closed_loop(SIM, policy, episodes=1)


def saved_model(path: Path, keys: list[str] | None = None) -> Path:
    tiny_model(keys).save_pretrained(path)
    return path


def test_evaluate_command_writes_rows_for_model_and_baselines(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    model = saved_model(tmp_path / "model")
    out = tmp_path / "eval"
    code = main([
        "evaluate", "--model",
        str(model), "--episodes", "4", "--output-dir",
        str(out), "--sim.route-length", "100", "sim.max_episode_steps=150"
    ])
    assert code == 0
    report = json.loads((out / "eval.json").read_text())
    assert [p["policy"] for p in report["policies"]] == ["model-controls", "autopilot", "random"]
    assert all(p["episodes"] == 4 for p in report["policies"])
    assert report["simulator"]["route_length"] == 100.0
    assert len(iio.imread(out / "episode.gif", index=None)) > 1
    printed = capsys.readouterr().out
    assert "model-controls" in printed and "collision_free" in printed

    both = tmp_path / "both"
    code = main([
        "evaluate", "--model",
        str(model), "--mode", "both", "--episodes", "1", "--no-baselines", "--video", "none",
        "--output-dir",
        str(both), "sim.route_length=100", "sim.max_episode_steps=50"
    ])
    assert code == 0
    report = json.loads((both / "eval.json").read_text())
    assert [p["policy"] for p in report["policies"]] == ["model-controls", "model-waypoints"]
    assert not (both / "episode.gif").exists()


def test_evaluate_command_rejects_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    missing = tmp_path / "no-model"
    assert main(["evaluate", "--model", str(missing), "--output-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "save_pretrained" in err and "config.json" in err

    camera = saved_model(tmp_path / "camera", ["camera", "state"])
    assert main(["evaluate", "--model", str(camera), "--output-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "['camera', 'state']" in err and "['state', 'neighbors']" in err

    assert main(["evaluate", "--sim.backend", "carla", "--output-dir", str(tmp_path)]) == 2
    assert "embedded backend" in capsys.readouterr().err
    assert main(["evaluate", "--mode", "steer"]) == 2
    assert "mode must be" in capsys.readouterr().err
    assert not (tmp_path / "eval.json").exists()


def test_vector_env_evaluation_matches_one_world_per_episode() -> None:
    # The CARLA path, on the embedded backend: with as many envs as episodes, it plays the
    # same first episodes as evaluate_closed_loop; with fewer, envs play several in a row.
    from trainers_rl.evaluation.closed_loop import evaluate_vector_env

    sim = SimulatorConfig(max_episode_steps=120, route_length=150.0)
    envs = EmbeddedVectorEnv(4, sim)
    expected = evaluate_closed_loop(sim, autopilot_policy(), episodes=4, seed=77)
    got = evaluate_vector_env(envs, lambda obs: envs.autopilot(), episodes=4, seed=77)
    by_seed = {e["seed"]: e for e in got["per_episode"]}
    assert sorted(by_seed) == [77, 78, 79, 80]
    for episode in expected["per_episode"]:
        assert by_seed[episode["seed"]]["distance_m"] == pytest.approx(episode["distance_m"])
    assert got["route_completion"] == pytest.approx(expected["route_completion"])
    assert got["collision_free"] == expected["collision_free"]
    two = EmbeddedVectorEnv(2, sim)
    several = evaluate_vector_env(two, lambda obs: two.autopilot(), episodes=5, seed=77)
    assert several["episodes"] == 5
    assert max(e["episode_of_env"] for e in several["per_episode"]) >= 2
    assert several["completed"] > 0.8
