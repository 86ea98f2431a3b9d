"""``trainers-rl train --check`` / ``ppo --check``: everything a run needs is checked before
any work, printed, and a missing piece is one line naming it and the extra to install; W&B
runs offline without a key and never reaches the network.

W&B tests point HOME, WANDB_CONFIG_DIR and WANDB_DIR at a temporary directory and clear every
WANDB_* variable, so no key or setting of the machine leaks in.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from trainers_rl.cli import main

ROOT = Path(__file__).parents[3]
CONFIG = ROOT / "configs" / "train" / "driving.yaml"
CARLA_CONFIG = ROOT / "configs" / "train" / "driving_carla.yaml"
TRAINERS_RL = Path(sys.executable).parent / "trainers-rl"
TINY_PPO = [
    "ppo.total_timesteps=512", "ppo.num_envs=4", "ppo.n_steps=64", "ppo.batch_size=128",
    "ppo.n_epochs=1", "ppo.device=cpu", "eval.episodes=2"
]


@pytest.fixture
def wandb_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """An environment with no W&B key, settings or netrc; also applied to this process."""
    for name in list(os.environ):
        if name.startswith("WANDB_") or name == "NETRC":
            monkeypatch.delenv(name)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(home / ".config" / "wandb"))
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb-dir"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return dict(os.environ)


def test_check_prints_what_it_checked_and_runs_nothing(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "runs"
    assert main(["train", "--config", str(CONFIG), "--output-dir", str(out_dir), "--check"]) == 0
    out = capsys.readouterr().out
    assert f"output_dir {out_dir} can be created" in out
    for module in ("onnx", "onnxscript", "onnxruntime"):
        assert f"{module} " in out
    assert "CARLA client: not needed (sim.backend embedded)" in out
    assert "W&B: off" in out and "nothing was run" in out
    assert list(tmp_path.iterdir()) == []


def test_the_image_check_spelling_works_from_the_repository_root(tmp_path: Path) -> None:
    # `trainers-rl train --config configs/train/driving.yaml --check`, exactly as the image
    # check types it, in a directory that holds configs/ (a copy of the repository's).
    (tmp_path / "configs" / "train").mkdir(parents=True)
    (tmp_path / "configs" / "train" / "driving.yaml").write_text(CONFIG.read_text())
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [str(TRAINERS_RL), "train", "--config", "configs/train/driving.yaml", "--check"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300)
    assert done.returncode == 0, done.stderr
    assert "output_dir runs can be created" in done.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["configs"]


@pytest.mark.parametrize("module, extra", [("onnxscript", "trainyard-trainers-rl[export]"),
                                           ("onnx", "trainyard-trainers-rl[export]")])
def test_missing_export_module_is_one_line_before_any_work(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str],
                                                           module: str, extra: str) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # what `import` meets when it is absent
    for check in (["--check"], []):
        argv = ["train", "--config", str(CONFIG), "--output-dir", str(tmp_path), *check]
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1
        assert f"needs the module {module!r}" in err
        assert f"pip install '{extra}'" in err and "export=false" in err
    assert list(tmp_path.iterdir()) == []


def test_carla_backend_needs_the_client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["train", "--config", str(CARLA_CONFIG), "--output-dir", str(tmp_path), "--check"]
    assert main(argv) == 0  # the client is installed here; no server is contacted
    assert "CARLA client: carla 0.9.16" in capsys.readouterr().out
    monkeypatch.setitem(sys.modules, "carla", None)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "sim.backend carla needs the module 'carla'" in err
    # The package's own extra once installed with it declared, else carla-env's.
    assert re.search(r"pip install 'trainyard-(trainers-rl|carla-env)\[carla\]'", err)


def test_output_dir_that_is_a_file_is_refused(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "runs"
    blocker.write_text("")
    argv = ["train", "--config", str(CONFIG), "--output-dir", str(blocker / "x"), "--check"]
    assert main(argv) == 2
    assert "exists and is not a directory" in capsys.readouterr().err


def test_wandb_online_without_a_key_is_one_line_and_writes_nothing(
        tmp_path: Path, wandb_env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "runs"
    for command in (["train", "--config", str(CONFIG)], ["ppo", *TINY_PPO]):
        assert main([*command, "--output-dir", str(out_dir), "--use-wandb"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, err
        assert "WANDB_API_KEY" in err and "WANDB_MODE=offline" in err
    assert not out_dir.exists()


def test_wandb_missing_names_the_extra(tmp_path: Path, wandb_env: dict[str, str],
                                       monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "wandb", None)
    argv = ["ppo", "--output-dir", str(tmp_path / "runs"), "--use-wandb", "--check"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "wandb is not installed: pip install 'trainyard-" in err and "[wandb]'" in err


def test_ppo_with_wandb_offline_writes_the_offline_run(tmp_path: Path,
                                                       wandb_env: dict[str, str]) -> None:
    # A real run in its own process (wandb starts a service process), offline: no key, and
    # the TensorBoard logs mirrored into the run directory's wandb/offline-run-*/.
    env = {**wandb_env, "WANDB_MODE": "offline"}
    out_dir = tmp_path / "runs"
    check = subprocess.run([
        str(TRAINERS_RL), "ppo", "--output-dir",
        str(out_dir), "--use-wandb", "--check", *TINY_PPO
    ],
                           env=env,
                           cwd=tmp_path,
                           capture_output=True,
                           text=True,
                           timeout=300)
    assert check.returncode == 0, check.stderr
    assert "W&B: wandb" in check.stdout and "mode offline" in check.stdout
    assert not out_dir.exists()
    done = subprocess.run(
        [str(TRAINERS_RL), "ppo", "--output-dir",
         str(out_dir), "--use-wandb", *TINY_PPO],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (run_dir,) = out_dir.iterdir()
    (offline,) = (run_dir / "wandb").glob("offline-run-*")
    (log,) = offline.glob("run-*.wandb")
    data = log.read_bytes()
    assert b"train/approx_kl" in data  # SB3's TensorBoard scalars, mirrored
    assert b'"total_timesteps":512' in data  # the run's config
    assert (run_dir / "eval.json").is_file()
