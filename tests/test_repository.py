"""Repository-wide rules: pinned installs, no machine paths, no forbidden dependencies."""

from __future__ import annotations

import os
import re
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYPROJECTS = sorted((ROOT / "packages").glob("*/pyproject.toml"))
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def _constraints() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if "==" in line and not line.lstrip().startswith("#"):
            name, version = line.split(";")[0].strip().split("==")
            pins.setdefault(name.lower().replace("_", "-"), version)
    return pins


def _requirements(pyproject: Path) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    reqs = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        reqs += extra
    return reqs


def test_torch_is_pinned_once_at_2_13_0() -> None:
    assert _constraints()["torch"] == "2.13.0"
    pins = [p for p in ROOT.rglob("*.txt") if ".nox" not in p.parts and ".venv" not in p.parts]
    torch_pins = [p for p in pins if re.search(r"^torch==", p.read_text(), re.MULTILINE)]
    assert torch_pins == [ROOT / "constraints.txt"]


@pytest.mark.parametrize("pyproject", PYPROJECTS, ids=lambda p: p.parent.name)
def test_every_dependency_is_pinned_or_local(pyproject: Path) -> None:
    pins = _constraints()
    for req in _requirements(pyproject):
        name = _NAME.match(req)[1].lower().replace("_", "-")  # type: ignore[index]
        if name.startswith("trainyard-"):
            assert "@ {root:parent:uri}/" in req, f"{req!r} must point at its local path"
            continue
        assert name in pins, f"{pyproject}: {name} is not in constraints.txt (run make constraints)"
        assert name not in {"torchvision", "torchcodec", "lerobot"}, f"{pyproject} names {name}"


def _tracked_text_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         cwd=ROOT,
                         capture_output=True,
                         check=True).stdout
    files = [ROOT / name for name in out.decode().split("\0") if name]
    return [f for f in files if f.is_file() and b"\0" not in f.read_bytes()[:4096]]


def test_no_path_of_this_machine_is_written_in_the_repository() -> None:
    # The checkout's parent catches paths to its siblings (a shared fixtures folder); when the
    # checkout sits directly in a scratch folder, that folder is every container's /tmp too,
    # so the checkout's own path is looked for instead.
    parent = ROOT if ROOT.parent in (Path("/tmp"), Path("/var/tmp")) else ROOT.parent
    needles = {str(parent) + "/", str(Path.home()) + "/"}
    needles |= {p for p in os.environ.get("PIP_FIND_LINKS", "").split() if p}
    needles.discard("/")
    offenders = [
        f"{path.relative_to(ROOT)}: {needle}" for path in _tracked_text_files()
        for needle in needles if needle in path.read_text(errors="ignore")
    ]
    assert not offenders, offenders
