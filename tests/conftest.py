"""Shared helpers for the cross-package tests."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def uv_bin() -> str:
    """uv from the running interpreter's environment (ci/dev-requirements.txt), else PATH."""
    local = Path(sys.executable).parent / "uv"
    found = str(local) if local.exists() else shutil.which("uv")
    assert found, "uv is not installed in this environment"
    return found
