"""TFRecord logs written by TensorFlow read back exactly; corruption is caught and named."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from vla_finetune.cli import main
from vla_finetune.episodes import find_episodes, summarize_episode
from vla_finetune.example_proto import parse_example
from vla_finetune.tfrecord import TFRecordError, read_records

FIXTURES = Path(__file__).parent / "fixtures" / "crane_x7"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())["episodes"][0]


def test_tensorflow_written_episode_matches_expected() -> None:
    (path,) = find_episodes(FIXTURES)
    steps = [parse_example(r) for r in read_records(path)]
    assert len(steps) == EXPECTED["steps"]
    proprio = np.stack([s["observation/proprio"] for s in steps])
    action = np.stack([s["action"] for s in steps])
    np.testing.assert_allclose(proprio, EXPECTED["proprio"], atol=1e-6)
    np.testing.assert_allclose(action, EXPECTED["action"], atol=1e-6)
    assert [int(s["observation/timestep"][0]) for s in steps] == list(range(10))
    summary = summarize_episode(path)
    assert summary.instruction == EXPECTED["instruction"]
    assert list(summary.cameras) == EXPECTED["cameras"]


def _copy_fixture(tmp_path: Path) -> Path:
    root = tmp_path / "logs"
    shutil.copytree(FIXTURES / EXPECTED["dir"], root / EXPECTED["dir"])
    return root / EXPECTED["dir"] / "episode_data.tfrecord"


def test_flipped_byte_is_a_checksum_error(tmp_path: Path) -> None:
    path = _copy_fixture(tmp_path)
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(TFRecordError, match=r"record 0 at byte 0: data checksum mismatch"):
        list(read_records(path))


def test_truncated_file_is_named(tmp_path: Path) -> None:
    path = _copy_fixture(tmp_path)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(TFRecordError, match=r"episode_data\.tfrecord: record 9 .*truncated"):
        list(read_records(path))


def test_inspect_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", "--data-root", str(FIXTURES)]) == 0
    out = capsys.readouterr().out
    assert "pick up the red cube" in out and "primary,wrist" in out
    assert main(["inspect", "--data-root", str(tmp_path)]) == 2
    assert "holds no" in capsys.readouterr().err
