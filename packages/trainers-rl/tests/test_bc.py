"""Demonstrations from the autopilot; behaviour cloning alone and under torchrun (gloo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from carla_env import SimulatorConfig
from driving_vla import DrivingVLA
from trainers_rl.imitation.bc import BCConfig, train_bc
from trainers_rl.imitation.demos import DemoConfig, load_demos, record_demos


@pytest.fixture(scope="module")
def demos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    sim = SimulatorConfig(route_length=150.0, max_episode_steps=200)
    out = tmp_path_factory.mktemp("demos") / "highway"
    return record_demos(sim, DemoConfig(episodes=8, num_envs=4, trajectory_length=5, stride=3), out)


def test_recorded_dataset_has_consistent_targets(demos: Path) -> None:
    arrays, meta = load_demos(demos)
    n = meta["samples"]
    assert n > 300 and meta["route_completed"] == 1.0
    assert arrays["state"].shape == (n, 16) and arrays["neighbors"].shape == (n, 8, 7)
    assert arrays["waypoints"].shape == (n, 5, 2) and arrays["actions"].shape == (n, 3)
    # The car drives forward: waypoints lie ahead and grow further out.
    forward = arrays["waypoints"][..., 0]
    assert np.all(forward[:, 0] > 0) and np.all(np.diff(forward, axis=1) > 0)
    with pytest.raises(FileExistsError, match="already holds a dataset"):
        record_demos(SimulatorConfig(), DemoConfig(episodes=1), demos)


def test_bc_learns_and_saves_a_driving_vla(demos: Path, tmp_path: Path) -> None:
    report = train_bc(
        BCConfig(data_dir=str(demos), output_dir=str(tmp_path), epochs=4, batch_size=64))
    assert report["losses"][-1] < 0.5 * report["losses"][0]
    model = DrivingVLA.from_pretrained(tmp_path / "model")
    arrays, _ = load_demos(demos)
    out = model(state=torch.as_tensor(arrays["state"][:64]),
                neighbors=torch.as_tensor(arrays["neighbors"][:64]))
    assert out.waypoints.shape == (64, 5, 2)


def test_missing_dataset_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a demonstration dataset"):
        train_bc(BCConfig(data_dir=str(tmp_path / "nope")))


def test_torchrun_matches_a_single_process(demos: Path, tmp_path: Path) -> None:
    single = train_bc(
        BCConfig(data_dir=str(demos), output_dir=str(tmp_path / "one"), epochs=2, batch_size=64))
    torchrun = Path(sys.executable).parent / "torchrun"
    # Loopback for gloo: a sandbox's hostname may not resolve to a usable interface.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
    result = subprocess.run([
        str(torchrun), "--standalone", "--nproc_per_node=2", "-m", "trainers_rl.imitation.bc",
        f"data_dir={demos}", f"output_dir={tmp_path / 'two'}", "epochs=2", "batch_size=64"
    ],
                            capture_output=True,
                            text=True,
                            timeout=240,
                            env=env,
                            check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "two" / "bc_report.json").read_text())
    assert report["world_size"] == 2
    np.testing.assert_allclose(report["losses"], single["losses"], rtol=1e-4)


def test_record_demos_and_bc_commands(tmp_path: Path) -> None:
    from trainers_rl.cli import main

    data = tmp_path / "demos"
    assert main([
        "record-demos", f"output={data}", "demo.episodes=4", "demo.num_envs=4",
        "demo.trajectory_length=3", "sim.route_length=100"
    ]) == 0
    config = Path(__file__).resolve().parents[3] / "configs" / "sft" / "sft_waypoint_bc.yaml"
    assert main([
        "bc", "--config",
        str(config), f"data_dir={data}", f"output_dir={tmp_path / 'bc'}", "epochs=1",
        "batch_size=32"
    ]) == 0
    assert (tmp_path / "bc" / "model" / "config.json").is_file()
