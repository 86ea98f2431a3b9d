"""Each package installs alone from its path, and no install takes a stranger's package.

`carla-env` and `trainyard` on PyPI belong to unrelated projects. Every inter-package
dependency must resolve to a local path, so the resolution of each package into an empty
venv is checked: our distributions come from `file://` URLs inside this repository, and the
two taken names never appear.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = sorted(p.name for p in (ROOT / "packages").iterdir() if (p / "pyproject.toml").is_file())
TAKEN = {"carla-env", "trainyard"}
_LINE = re.compile(r"^ \+ (?P<name>[A-Za-z0-9._-]+)(?:==(?P<version>\S+))?(?: @ (?P<url>\S+))?"
                   r"(?: \(from (?P<from>\S+)\))?$")


def _resolve(uv: str, tmp_path: Path, *args: str, script: bool = False) -> dict[str, str]:
    """Dry-run an install into an empty venv; map each distribution to its source."""
    venv = tmp_path / "venv"
    subprocess.run([uv, "venv", "--quiet", "--python", sys.executable, str(venv)], check=True)
    # nox points UV_PYTHON at its own venv; the empty venv must be the only target here.
    env = {k: v for k, v in os.environ.items() if k not in ("UV_PYTHON", "UV_PROJECT_ENVIRONMENT")}
    env |= {"VIRTUAL_ENV": str(venv), "UV": uv}
    cmd = (["bash", str(ROOT / "ci" / "install.sh")] if script else [uv, "pip", "install"])
    result = subprocess.run([*cmd, "--dry-run", "--python",
                             str(venv / "bin" / "python"), *args],
                            cwd=ROOT,
                            env=env,
                            capture_output=True,
                            text=True,
                            timeout=300,
                            check=False)
    assert result.returncode == 0, result.stderr
    resolved = {}
    for line in result.stderr.splitlines() + result.stdout.splitlines():
        match = _LINE.match(line)
        if match:
            resolved[match["name"].lower()] = match["url"] or match["from"] or match["version"]
    assert "Would install" in result.stderr, result.stderr
    assert f"environment at: {venv}" in result.stderr, result.stderr
    return resolved


@pytest.mark.parametrize("package", PACKAGES)
def test_package_resolves_alone_from_local_paths(uv_bin: str, tmp_path: Path, package: str) -> None:
    resolved = _resolve(uv_bin, tmp_path, f"./packages/{package}")
    assert not TAKEN & set(resolved), f"{package} would install {TAKEN & set(resolved)} from PyPI"
    ours = {name: src for name, src in resolved.items() if name.startswith("trainyard-")}
    assert f"trainyard-{package}" in ours
    packages_uri = (ROOT / "packages").as_uri()
    for name, source in ours.items():
        assert source.startswith(packages_uri), f"{name} would come from {source}, not this repo"


def _local_torch_wheel() -> bool:
    """Whether pip here is configured with a local CPU torch (ci/install.sh passes it on)."""
    links = os.environ.get("UV_FIND_LINKS") or os.environ.get("PIP_FIND_LINKS") or ""
    pip = shutil.which("pip")
    if not links and pip:
        links = subprocess.run([pip, "config", "get", "global.find-links"],
                               capture_output=True,
                               text=True,
                               check=False).stdout
    return any(
        Path(d).is_dir() and any(Path(d).glob("torch-2.13.0+cpu-*.whl")) for d in links.split())


@pytest.mark.skipif(not _local_torch_wheel(), reason="no local CPU torch wheel configured for pip")
def test_install_script_takes_the_local_cpu_torch(uv_bin: str, tmp_path: Path) -> None:
    resolved = _resolve(uv_bin,
                        tmp_path,
                        "./packages/trainers-rl",
                        "./packages/model-merger",
                        script=True)
    assert resolved["torch"] == "2.13.0+cpu"
    assert not [name for name in resolved if name.startswith("nvidia-")]
