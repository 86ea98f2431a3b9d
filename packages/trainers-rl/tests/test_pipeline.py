"""The main job end to end on a tiny budget: every stage writes its part of one run directory,
a killed run resumes, and bad configs are refused before any work."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from carla_env.embedded import EmbeddedVectorEnv
from carla_env.evaluation import BatchPolicy, evaluate_policies
from driving_vla import DrivingVLA, DrivingVLAConfig
from trainers_rl import pipeline
from trainers_rl.cli import main
from trainers_rl.evaluation.policies import model_policy
from trainers_rl.pipeline import DrivingRunConfig, run_pipeline
from trainyard_core.config import ConfigError, load_config

CONFIG = Path(__file__).parents[3] / "configs" / "train" / "driving.yaml"
TINY = [
    "sim.max_episode_steps=150", "sim.route_length=120", "demos.episodes=16", "demos.num_envs=8",
    "bc.epochs=2", "bc.batch_size=64", "bc.hidden_size=32", "rl.ppo.num_envs=4",
    "rl.ppo.n_steps=32", "rl.ppo.batch_size=64", "rl.ppo.total_timesteps=256",
    "rl.ppo.value_warmup_steps=128", "rl.ppo.checkpoint_every=128", "rl.eval_every=128",
    "rl.eval_episodes=3", "eval.episodes=6", "tracking.tensorboard=false"
]


def test_make_train_pipeline_writes_one_complete_run_dir(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--config", str(CONFIG), "--output-dir", str(tmp_path), *TINY]) == 0
    out = capsys.readouterr().out
    (run_dir,) = tmp_path.iterdir()
    for name in ("config.yaml", "demos/meta.json", "bc/model/config.json", "model/config.json",
                 "rl/eval_history.jsonl", "export/model.onnx", "export/model.pt", "eval.json",
                 "episode.gif", "learning_curve.png", "summary.json"):
        assert (run_dir / name).is_file(), name
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["rl"]["total_timesteps"] == 256
    assert summary["export"]["onnx_max_abs_diff"] < 1e-4
    assert summary["export"]["torchscript_max_abs_diff"] < 1e-5
    policies = [row["policy"] for row in summary["eval"]]
    assert policies == ["policy", "bc", "bc-waypoints", "autopilot", "random"]
    for row in summary["eval"]:
        assert 0 <= row["collision_free"] <= 1 and 0 <= row["route_completion"] <= 1
    autopilot = summary["eval"][3]
    assert autopilot["route_completion"] > 0.9
    assert "closed loop, highway: 6 held-out episodes" in out and "autopilot" in out
    history = [json.loads(line) for line in (run_dir / "rl/eval_history.jsonl").open()]
    assert [h["step"] for h in history] == [128, 256]

    # The exported checkpoint is the policy: same actions as the checkpoint RL saved last.
    model = DrivingVLA.from_pretrained(run_dir / "model")
    last = DrivingVLA.from_pretrained(run_dir / "rl/checkpoints/step_000000256/model")
    env = EmbeddedVectorEnv(5, load_config(DrivingRunConfig, files=[CONFIG]).sim)
    obs, _ = env.reset(seed=7)
    np.testing.assert_array_equal(model.act(obs).numpy(), last.act(obs).numpy())

    # The "bc" row is the cloned policy as saved in bc/, not the fine-tuned one (the trainer
    # updates the model it is given in place).
    cloned = DrivingVLA.from_pretrained(run_dir / "bc/model").eval()
    assert not np.array_equal(cloned.act(obs).numpy(), model.act(obs).numpy())
    cfg = load_config(DrivingRunConfig, files=[run_dir / "config.yaml"])
    (bc_row,) = evaluate_policies(cfg.sim, {"bc": model_policy(cloned, sim=cfg.sim)},
                                  cfg.eval.episodes, cfg.eval.seed)
    assert bc_row == summary["eval"][1]

    _resume_is_checked_against_the_run(tmp_path, run_dir, capsys)

    # Resume as `make train ARGS="resume=DIR rl.ppo.total_timesteps=384"` spells it: the run's
    # own config (TINY is not repeated), a larger budget; demonstrations and cloning are kept.
    demos_mtime = (run_dir / "demos/data.npz").stat().st_mtime_ns
    assert main([
        "train", "--config",
        str(CONFIG), "--output-dir",
        str(tmp_path), f"resume={run_dir}", "rl.ppo.total_timesteps=384"
    ]) == 0
    assert (run_dir / "demos/data.npz").stat().st_mtime_ns == demos_mtime
    assert json.loads((run_dir / "summary.json").read_text())["rl"]["total_timesteps"] == 384
    resumed = load_config(DrivingRunConfig, files=[run_dir / "config.yaml"])
    assert resumed.rl.ppo.total_timesteps == 384 and resumed.demos.episodes == 16
    assert resumed.resume == ""  # a copy of config.yaml starts a new run


def test_carla_evaluation_is_the_same_evaluator_less_the_autopilot(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    # No CARLA server here: the evaluator is replaced by one that records what it was given.
    given: dict[str, Any] = {}

    def fake(sim: Any, policies: dict[str, BatchPolicy], *args: Any, **kwargs: Any) -> list:
        given.update(sim=sim, policies=policies, args=args, **kwargs)
        return [{"policy": name} for name in policies]

    monkeypatch.setattr(pipeline, "evaluate_policies", fake)
    cfg = load_config(DrivingRunConfig,
                      files=[CONFIG],
                      overrides=[*TINY, "sim.backend=carla", "eval.video=none"])
    model = DrivingVLA(DrivingVLAConfig(hidden_size=32))
    with caplog.at_level(logging.WARNING):
        rows = pipeline._evaluate(cfg, tmp_path, model, model)
    assert [r["policy"] for r in rows] == ["policy", "bc", "bc-waypoints", "random"]
    assert "carla backend has no expert" in caplog.text and "autopilot" in caplog.text
    # The training's servers, one env each, the same held-out seeds.
    assert given["sim"].backend == "carla" and given["num_envs"] == cfg.rl.ppo.num_envs
    assert given["args"][:2] == (cfg.eval.episodes, cfg.eval.seed)


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(root)): (p.stat().st_mtime_ns, p.stat().st_size)
        for p in sorted(root.rglob("*"))
    }


def _resume_is_checked_against_the_run(tmp_path: Path, run_dir: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    """resume=DIR alone resolves to the run's config; what would change the run is refused
    key by key, and a refused resume leaves every file as it was."""
    capsys.readouterr()
    saved = (run_dir / "config.yaml").read_text()
    copy, other = tmp_path / "same.yaml", tmp_path / "other.yaml"
    copy.write_text(saved)
    other.write_text(CONFIG.read_text().replace("scenario: highway", "scenario: night"))
    before = _snapshot(tmp_path)

    with pytest.raises(SystemExit) as exit_info:
        main(["train", f"resume={run_dir}", "--print-config"])
    assert exit_info.value.code == 0
    printed = capsys.readouterr().out
    assert "episodes: 16" in printed and "total_timesteps: 256" in printed
    started = load_config(DrivingRunConfig,
                          files=[CONFIG],
                          overrides=[*TINY, f"output_dir={tmp_path}"])
    assert load_config(DrivingRunConfig, files=[run_dir / "config.yaml"]) == started
    # --check: resume alone, then the make spelling (the file the run started from, the runs
    # folder, threads and logging may differ), then a file equal to the run's config.
    assert main(["train", "--resume", str(run_dir), "--check"]) == 0
    assert main([
        "train", "--config",
        str(CONFIG), "--output-dir", "elsewhere", f"resume={run_dir}", "torch_threads=2",
        "--no-tracking.tensorboard", "--check"
    ]) == 0
    assert main(["train", "--config", str(copy), f"resume={run_dir}", "--check"]) == 0
    assert "resume: " in capsys.readouterr().out

    # Overrides that change the run: one line per key, the run's value and the new one.
    assert main([
        "train", "--config",
        str(CONFIG), f"resume={run_dir}", "sim.scenario=urban", "rl.ppo.learning_rate=0.1",
        "rl.ppo.total_timesteps=128", "rl.ppo.device=auto"
    ]) == 2
    err = capsys.readouterr().err
    assert "4 setting(s) would change the run" in err
    assert "  sim.scenario: the run has 'highway', given 'urban' (from override " in err
    assert "  rl.ppo.learning_rate: the run has 3e-05, given 0.1 (from override " in err
    assert "  rl.ppo.total_timesteps: the run has 256, given 128" in err and "may only grow" in err
    assert "  rl.ppo.device: the run has 'cpu', given 'auto'" in err
    # A --config file the run did not start from is layered and checked key by key.
    assert main(["train", "--config", str(other), f"resume={run_dir}"]) == 2
    err = capsys.readouterr().err
    assert f"  sim.scenario: the run has 'highway', given 'night' (from file {str(other)!r})" in err
    assert f"  demos.episodes: the run has 16, given 512 (from file {str(other)!r})" in err
    # The Python API is held to the same rule.
    changed = load_config(DrivingRunConfig,
                          files=[run_dir / "config.yaml"],
                          overrides=[f"resume={run_dir}", "bc.epochs=3"])
    with pytest.raises(ConfigError, match=r"bc\.epochs: the run has 2, given 3"):
        run_pipeline(changed)

    assert (run_dir / "config.yaml").read_text() == saved
    assert _snapshot(tmp_path) == before


@pytest.mark.parametrize("override, message", [
    ("rl.ppo.learning_rat=0.1", "rl.ppo.learning_rat"),
    ("sim.backend=carlaa", "backend"),
    ("rl.algorithm=dqn", "rl.algorithm must be one of ppo, sac, none"),
    ("eval.seed=10", "overlaps the training env seeds"),
    ("rl.ppo.hidden_size=32", "hidden_size=32"),
    ("rl.ppo.net_arch=[32]", "rl.ppo: PPOConfig.net_arch=[32]"),
    ("rl.ppo.env_id=Pendulum-v1", "env_id='Pendulum-v1' names an env to build"),
])
def test_bad_config_is_refused_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               override: str, message: str) -> None:
    argv = ["train", "--config", str(CONFIG), "--output-dir", str(tmp_path), override]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_resume_of_a_directory_that_is_not_a_run(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--config", str(CONFIG), f"resume={tmp_path / 'gone'}"]) == 2
    assert "is not a run directory" in capsys.readouterr().err


def test_misspelt_key_in_a_config_file_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(CONFIG.read_text().replace("  episodes: 512", "  episodse: 512"))
    with pytest.raises(ConfigError, match="episodse"):
        load_config(DrivingRunConfig, files=[bad])


@pytest.mark.parametrize("name", ["driving.yaml", "driving_carla.yaml"])
def test_shipped_configs_load(name: str) -> None:
    cfg = load_config(DrivingRunConfig, files=[CONFIG.parent / name])
    assert cfg.rl.algorithm == "ppo"


@pytest.mark.carla
def test_pipeline_drives_carla_servers(tmp_path: Path) -> None:
    # Needs `carla-server start --count 2` (the self-hosted GPU job starts them).
    carla = CONFIG.parent / "driving_carla.yaml"
    argv = ["train", "--config", str(carla), "--output-dir", str(tmp_path), *TINY[2:]]
    assert main([*argv, "rl.ppo.num_envs=2", "eval.episodes=2"]) == 0
    (run_dir,) = tmp_path.iterdir()
    report = json.loads((run_dir / "eval.json").read_text())
    assert report["backend"] == "carla"
    assert [p["policy"] for p in report["policies"]] == ["policy", "random", "bc"]


def test_pipeline_with_sac_clones_a_tanh_policy_and_fine_tunes_it(tmp_path: Path) -> None:
    sac = [
        "rl.algorithm=sac", "rl.sac.num_envs=4", "rl.sac.total_timesteps=96",
        "rl.sac.learning_starts=32", "rl.sac.batch_size=32", "rl.sac.buffer_size=1000",
        "rl.sac.device=cpu", "rl.eval_every=0", "export=false", "eval.video=none",
        "eval.waypoints=false"
    ]
    argv = ["train", "--config", str(CONFIG), "--output-dir", str(tmp_path), *TINY, *sac]
    assert main(argv) == 0
    (run_dir,) = tmp_path.iterdir()
    assert DrivingVLA.from_pretrained(run_dir / "bc/model").config.control_activation == "tanh"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["rl"]["algorithm"] == "sac" and summary["rl"]["total_timesteps"] == 96
    assert [r["policy"] for r in summary["eval"]] == ["policy", "bc", "autopilot", "random"]
    assert (run_dir / "rl/checkpoints/step_000000096/replay_buffer.pkl").is_file()
