"""DrivingVLAConfig keeps the Hugging Face contract and refuses impossible sizes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from driving_vla import DrivingVLAConfig
from driving_vla.cli import main


def test_config_round_trips_through_save_pretrained(tmp_path: Path) -> None:
    config = DrivingVLAConfig(num_cameras=2, image_size=128, trajectory_length=5)
    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == "driving_vla"
    loaded = DrivingVLAConfig.from_pretrained(tmp_path, local_files_only=True)
    assert (loaded.num_cameras, loaded.image_size, loaded.trajectory_length) == (2, 128, 5)


@pytest.mark.parametrize(("kwargs", "field"), [({
    "trajectory_length": 0
}, "trajectory_length"), ({
    "action_dim": 2
}, "action_dim"), ({
    "image_size": "big"
}, "image_size"), ({
    "control_activation": "softsign"
}, "control_activation")])
def test_bad_sizes_name_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=f"DrivingVLAConfig.{field}"):
        DrivingVLAConfig(**kwargs)


def test_inspect_prints_architecture(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    DrivingVLAConfig(trajectory_length=7).save_pretrained(tmp_path)
    assert main(["inspect", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "trajectory_length" in out and "7" in out


def test_inspect_takes_the_logging_flags_and_refuses_overrides(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    DrivingVLAConfig().save_pretrained(tmp_path)
    assert main(["inspect", str(tmp_path), "--log-level", "warning"]) == 0
    assert "hidden_size" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exited:
        main(["inspect", str(tmp_path), "hidden_size=8"])
    assert exited.value.code == 2
    assert "unrecognized arguments: hidden_size=8" in capsys.readouterr().err


def test_inspect_refuses_a_directory_without_config(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(tmp_path)]) == 2
    assert "no config.json" in capsys.readouterr().err


def test_inspect_names_a_bad_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "config.json").write_text(
        json.dumps({
            "model_type": "driving_vla",
            "hidden_size": -1
        }))
    assert main(["inspect", str(tmp_path)]) == 2
    assert "hidden_size" in capsys.readouterr().err
