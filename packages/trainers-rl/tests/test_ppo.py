"""PPO learns, and the ppo command writes a complete run directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainers_rl.cli import main
from trainers_rl.run_config import PPORunConfig
from trainyard_core.config import ConfigError, load_config


def test_ppo_run_beats_random_and_writes_run_dir(tmp_path: Path) -> None:
    argv = [
        "ppo", "--output-dir",
        str(tmp_path), "ppo.total_timesteps=20000", "ppo.n_steps=32", "ppo.batch_size=256",
        "ppo.n_epochs=20", "ppo.gamma=0.98", "ppo.gae_lambda=0.8", "ppo.learning_rate=1e-3",
        "eval.episodes=5", "--no-tracking.tensorboard"
    ]
    assert main(argv) == 0
    (run_dir,) = tmp_path.iterdir()
    names = {p.name for p in run_dir.iterdir()}
    assert {"config.yaml", "checkpoints", "eval.json", "learning_curve.png", "monitor"} <= names
    report = json.loads((run_dir / "eval.json").read_text())
    ppo, rand = report["policies"]
    assert report["total_timesteps"] >= 20000
    assert ppo["mean_return"] > 2 * rand["mean_return"]
    assert load_config(PPORunConfig, files=[run_dir / "config.yaml"]).ppo.total_timesteps == 20000


def test_eval_seeds_must_not_overlap_training() -> None:
    with pytest.raises(ConfigError, match="overlaps the training seeds"):
        load_config(PPORunConfig, overrides=["ppo.seed=100", "eval.seed=103"])


def test_unknown_env_is_refused_before_training(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ppo", "--output-dir", str(tmp_path), "ppo.env_id=CartPole-v9"]) == 2
    assert "'CartPole-v9' is not a registered" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
