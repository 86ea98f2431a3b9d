"""A stage counts as finished only by its marker, written last: a run killed while the cloned
model is being saved resumes by cloning again, never on a partial model."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import torch

from driving_vla import DrivingVLA, DrivingVLAConfig
from trainers_rl.cli import main
from trainers_rl.imitation.bc import BCConfig, train_bc
from trainers_rl.pipeline import STAGE_DONE, DrivingRunConfig, stage_done
from trainyard_core.config import load_config

CONFIG = Path(__file__).parents[3] / "configs" / "train" / "driving.yaml"
TINY = [
    "sim.max_episode_steps=150", "sim.route_length=120", "demos.episodes=8", "demos.num_envs=8",
    "bc.epochs=1", "bc.batch_size=64", "bc.hidden_size=32", "rl.algorithm=none", "export=false",
    "eval.episodes=2", "eval.video=none", "eval.waypoints=false", "tracking.tensorboard=false"
]

# The run, killed by SIGKILL at the moment transformers has written the cloned model's
# config.json and is about to write its weights (the window the issue describes).
KILLED_IN_SAVE = """
import os
import signal
import sys

import transformers.modeling_utils


def killed(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)


transformers.modeling_utils.safe_save_file = killed
from trainers_rl.cli import main

main(["train", "--config", sys.argv[1], "--output-dir", sys.argv[2], *sys.argv[3:]])
"""


def test_run_killed_while_saving_the_cloned_model_clones_again(tmp_path: Path) -> None:
    script = tmp_path / "killed.py"
    script.write_text(KILLED_IN_SAVE)
    runs = tmp_path / "runs"
    victim = subprocess.run(
        [sys.executable, str(script), str(CONFIG),
         str(runs), *TINY],
        env={
            **os.environ, "OMP_NUM_THREADS": "1"
        },
        capture_output=True,
        timeout=600,
        check=False)
    assert victim.returncode == -signal.SIGKILL, victim.stderr.decode()[-2000:]
    (run_dir,) = runs.iterdir()
    bc_dir = run_dir / "bc"
    assert stage_done(run_dir / "demos") and not stage_done(bc_dir)
    # What the kill left: the model's config.json, but in a temporary directory, no bc/model.
    assert not (bc_dir / "model").exists()
    assert [p.name for p in bc_dir.glob(".model.*/config.json")], list(bc_dir.rglob("*"))

    assert main(["train", f"resume={run_dir}"]) == 0
    assert stage_done(bc_dir)
    assert json.loads((bc_dir / STAGE_DONE).read_text())["stage"] == "behaviour cloning"
    assert sorted(p.name for p in bc_dir.iterdir()) == ["bc_report.json", "model", STAGE_DONE]
    # The clone is the one an uninterrupted run makes: same demonstrations, same settings.
    reference = tmp_path / "reference"
    bc = load_config(DrivingRunConfig, files=[run_dir / "config.yaml"]).bc
    train_bc(
        BCConfig(**dataclasses.asdict(bc),
                 data_dir=str(run_dir / "demos"),
                 output_dir=str(reference)))
    expected = DrivingVLA.from_pretrained(reference / "model").state_dict()
    actual = DrivingVLA.from_pretrained(bc_dir / "model").state_dict()
    assert expected.keys() == actual.keys()
    for name in expected:
        assert torch.equal(expected[name], actual[name]), name
    summary = json.loads((run_dir / "summary.json").read_text())
    assert [row["policy"] for row in summary["eval"]] == ["policy", "autopilot", "random"]


def _saved_model(path: Path) -> Path:
    DrivingVLA(DrivingVLAConfig(hidden_size=8)).save_pretrained(path)
    return path


def test_a_model_directory_without_weights_is_not_a_finished_clone(tmp_path: Path) -> None:
    bc_dir = tmp_path / "bc"
    _saved_model(bc_dir / "model")
    (bc_dir / "model" / "model.safetensors").unlink()
    (bc_dir / "bc_report.json").write_text("{}")
    assert (bc_dir / "model" / "config.json").is_file()  # what was taken as done before
    assert not stage_done(bc_dir)
    (bc_dir / "bc_report.json").unlink()
    _saved_model(bc_dir / "model")
    assert not stage_done(bc_dir)  # the report is written after the model: none, not finished


def test_runs_from_before_the_markers_keep_their_finished_stages(tmp_path: Path) -> None:
    # Before the markers, demos wrote meta.json last (atomically) and cloning its report after
    # the model: with both, and the weights, those stages were complete.
    demos = tmp_path / "demos"
    demos.mkdir()
    (demos / "data.npz").write_bytes(b"")
    assert not stage_done(demos)
    (demos / "meta.json").write_text("{}")
    assert stage_done(demos)
    bc_dir = tmp_path / "bc"
    _saved_model(bc_dir / "model")
    (bc_dir / "bc_report.json").write_text("{}")
    assert stage_done(bc_dir)
    shutil.rmtree(bc_dir / "model")
    assert not stage_done(bc_dir)
    # A stage of today's runs counts by its marker alone.
    (tmp_path / "rl").mkdir()
    assert not stage_done(tmp_path / "rl")
    (tmp_path / "rl" / STAGE_DONE).write_text("{}")
    assert stage_done(tmp_path / "rl")
