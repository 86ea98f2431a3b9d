"""A DrivingVLA driving through carla-env's evaluator, and ``trainers-rl evaluate``.

The evaluator itself (metrics, seeds, replays, videos) is tested in carla-env; here what
trainers-rl adds: a model as a batch policy, reading only observations and ``info``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from carla_env import SimulatorConfig
from carla_env.envs import make_vector_env
from carla_env.evaluation import BatchPolicy, evaluate
from driving_vla import DrivingVLA, DrivingVLAConfig
from trainers_rl.cli import main
from trainers_rl.evaluation import cli as evaluate_cli
from trainers_rl.evaluation.policies import ego_speed, model_policy, state_speed_limit

SIM = SimulatorConfig(route_length=150.0, max_episode_steps=250)
SEED = 1_000_000


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    # The models here are tiny: thread hand-offs cost more than they save, and on a busy
    # machine they stall (10x slower seen on 2 shared cores).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def drive(sim: SimulatorConfig, policy: BatchPolicy, episodes: int) -> dict[str, Any]:
    """``episodes`` episodes on the embedded batch, one world each, from env seed SEED."""
    envs = make_vector_env(episodes, sim)
    try:
        return evaluate(envs, policy, episodes, SEED, name=getattr(policy, "__name__", "policy"))
    finally:
        envs.close()


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


@pytest.mark.parametrize("keys", [["state", "neighbors"], ["neighbors"]])
def test_model_policies_drive_through_either_head(keys: list[str]) -> None:
    model = constant_heads(tiny_model(keys), controls=[0.0, 0.0, 1.0], speed=12.0)
    sim = dataclasses.replace(SIM,
                              traffic_density=0.0,
                              max_episode_steps=200,
                              observation_keys=keys)
    # The control head says brake: the car stops and the episode times out.
    braking = drive(sim, model_policy(model, "controls"), 2)
    assert braking["policy"] == "model-controls"
    assert all(e["outcome"] == "timeout" for e in braking["per_episode"])
    assert braking["mean_speed_mps"] < 2.0
    # The waypoint head says 12 m/s straight on; the controller holds that speed, measured
    # from the state observation or, without it, from info["speed"].
    cruising = drive(sim, model_policy(model, "waypoints", sim=sim), 2)
    assert cruising["policy"] == "model-waypoints"
    assert cruising["mean_speed_mps"] == pytest.approx(12.0, abs=1.0)
    assert cruising["route_completion"] > 0.5
    with pytest.raises(ValueError, match="mode must be"):
        model_policy(model, "steer")
    with pytest.raises(ValueError, match="needs sim="):
        model_policy(model, "waypoints")


def test_ego_speed_is_the_returned_observations() -> None:
    sim = dataclasses.replace(SIM, scenario="urban")
    envs = make_vector_env(4, sim)
    obs, info = envs.reset(seed=3)
    limit = state_speed_limit(sim)
    carla = dataclasses.replace(sim, backend="carla")
    assert limit is not None and state_speed_limit(carla) is None  # CARLA's varies by road
    hard_left = np.tile(np.array([1.0, 1.0, 0.0], np.float32), (4, 1))
    for _ in range(300):
        obs, _, terminated, truncated, info = envs.step(hard_left)
        if (terminated | truncated).any():
            break
    done = terminated | truncated
    assert done.any() and not done.all()
    # From the state: today's arithmetic (float32 feature times the map's limit).
    np.testing.assert_array_equal(ego_speed(obs, info, limit),
                                  obs["state"][:, 0].astype(np.float64) * limit)
    np.testing.assert_allclose(ego_speed(obs, info, limit), info["speed"], rtol=1e-6)
    # Without it: the new observation's speed, not the finished episode's last (velocity).
    speed = ego_speed({"neighbors": obs["neighbors"]}, info, limit)
    np.testing.assert_array_equal(speed, info["speed"])
    assert (speed[done] != info["velocity"][done]).all()
    envs.close()


def test_model_policy_names_a_missing_observation() -> None:
    policy = model_policy(tiny_model(["camera", "state"]), "controls")
    with pytest.raises(ValueError, match=r"\['camera'\]"):
        drive(SIM, policy, 1)


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

    assert main(["evaluate", "--mode", "steer"]) == 2
    assert "mode must be" in capsys.readouterr().err
    assert not (tmp_path / "eval.json").exists()


def test_evaluate_command_on_carla_has_every_row_but_the_autopilot(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    # No CARLA server here: the evaluator is replaced by one that records what it was given.
    given: dict[str, Any] = {}

    def fake(sim: SimulatorConfig, policies: dict[str, BatchPolicy], **kwargs: Any) -> list:
        given.update(sim=sim, policies=policies, **kwargs)
        return [{"policy": name} for name in policies]

    monkeypatch.setattr(evaluate_cli, "evaluate_policies", fake)
    model = saved_model(tmp_path / "model")
    with caplog.at_level(logging.WARNING):
        code = main([
            "evaluate", "--model",
            str(model), "--mode", "both", "--sim.backend", "carla", "--episodes", "3",
            "--output-dir",
            str(tmp_path / "eval")
        ])
    assert code == 0
    assert list(given["policies"]) == ["model-controls", "model-waypoints", "random"]
    assert given["sim"].backend == "carla" and given["episodes"] == 3
    assert "carla backend has no expert" in caplog.text and "autopilot" in caplog.text
