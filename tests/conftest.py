"""Shared helpers for the cross-package tests."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# ci/packages.py, the one package list, importable by the tests as `trainyard_ci_packages`
# (the name the noxfile and ci/images.py load it under): it is a script, not an installed module.
if "trainyard_ci_packages" not in sys.modules:
    _spec = importlib.util.spec_from_file_location("trainyard_ci_packages",
                                                   ROOT / "ci" / "packages.py")
    assert _spec is not None and _spec.loader is not None
    sys.modules["trainyard_ci_packages"] = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(sys.modules["trainyard_ci_packages"])


@pytest.fixture(scope="session")
def uv_bin() -> str:
    """uv from the running interpreter's environment (ci/dev-requirements.txt), else PATH."""
    local = Path(sys.executable).parent / "uv"
    found = str(local) if local.exists() else shutil.which("uv")
    assert found, "uv is not installed in this environment"
    return found
