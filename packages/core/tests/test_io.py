"""Atomic writes leave the old state or the new one, never half of either."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from trainyard_core.io import atomic_directory, atomic_write_text


def test_atomic_write_replaces_whole_file(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    target.write_text("old")
    atomic_write_text(target, "new")
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_failed_directory_write_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "model"
    with pytest.raises(RuntimeError), atomic_directory(target) as tmp:
        (tmp / "part.bin").write_bytes(b"x")
        raise RuntimeError("disk full")
    assert list(tmp_path.iterdir()) == []


def test_existing_directory_needs_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "model"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(FileExistsError, match="already exists"), atomic_directory(target):
        pass
    with atomic_directory(target, overwrite=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert [p.name for p in target.iterdir()] == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_written_files_get_normal_permissions(tmp_path: Path) -> None:
    import os
    umask = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o644


def test_atomic_path_publishes_or_leaves_nothing(tmp_path: Path) -> None:
    from trainyard_core.io import atomic_path

    with atomic_path(tmp_path / "model.onnx") as tmp:
        tmp.write_bytes(b"ok")
    assert (tmp_path / "model.onnx").read_bytes() == b"ok"
    with pytest.raises(ValueError), atomic_path(tmp_path / "video.gif") as tmp:
        tmp.write_bytes(b"half")
        raise ValueError("encoder failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_atomic_directory_gets_the_mode_mkdir_would_give(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        with atomic_directory(tmp_path / "model") as tmp:
            (tmp / "f").write_text("x")
    finally:
        os.umask(old)
    assert (tmp_path / "model").stat().st_mode & 0o777 == 0o755
