"""Each package installs alone from its path, and no install takes a stranger's package.

`carla-env` and `trainyard` on PyPI belong to unrelated projects. Every inter-package
dependency must resolve to a local path, so the resolution of each package into an empty
venv is checked: our distributions come from `file://` URLs inside this repository, and the
two taken names never appear.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import trainyard_ci_packages as ci_packages

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = [p.folder for p in ci_packages.load(ROOT)]
TAKEN = {"carla-env", "trainyard"}
_LINE = re.compile(r"^ \+ (?P<name>[A-Za-z0-9._-]+)(?:==(?P<version>\S+))?(?: @ (?P<url>\S+))?"
                   r"(?: \(from (?P<from>\S+)\))?$")


def _resolve(uv: str, tmp_path: Path, *args: str) -> dict[str, str]:
    """Dry-run ci/install.sh into an empty venv; map each distribution to its version/source."""
    venv = tmp_path / "venv"
    subprocess.run([uv, "venv", "--quiet", "--python", sys.executable, str(venv)], check=True)
    # nox points UV_PYTHON at its own venv; the empty venv must be the only target here.
    env = {k: v for k, v in os.environ.items() if k not in ("UV_PYTHON", "UV_PROJECT_ENVIRONMENT")}
    env |= {"VIRTUAL_ENV": str(venv), "UV": uv}
    result = subprocess.run([
        "bash",
        str(ROOT / "ci" / "install.sh"), "--dry-run", "--python",
        str(venv / "bin" / "python"), *args
    ],
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


def _pip_resolve(tmp_path: Path, package: str) -> dict[str, dict[str, str]]:
    """What `pip install ./packages/<package>` would install into an empty venv."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    report = tmp_path / "report.json"
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    result = subprocess.run([
        str(venv / "bin" / "pip"), "install", "--quiet", "--dry-run", "--report",
        str(report), f"./packages/{package}"
    ],
                            cwd=ROOT,
                            env=env,
                            capture_output=True,
                            text=True,
                            timeout=600,
                            check=False)
    assert result.returncode == 0, result.stderr
    return {
        item["metadata"]["name"].lower(): {
            "version": item["metadata"]["version"],
            "url": item["download_info"]["url"]
        } for item in json.loads(report.read_text())["install"]
    }


@pytest.mark.parametrize("package", PACKAGES)
def test_pip_installs_package_alone_from_local_paths(tmp_path: Path, package: str) -> None:
    resolved = _pip_resolve(tmp_path, package)
    assert not TAKEN & set(resolved), f"{package} would install {TAKEN & set(resolved)} from PyPI"
    ours = {name: info["url"] for name, info in resolved.items() if name.startswith("trainyard-")}
    assert f"trainyard-{package}" in ours
    packages_uri = (ROOT / "packages").as_uri()
    for name, url in ours.items():
        assert url.startswith(packages_uri), f"{name} would come from {url}, not this repo"
    if "torch" in resolved and _local_torch_wheel():
        # pip here serves torch 2.13.0 as a CPU build; a range admitting 2.14 would pull CUDA.
        assert resolved["torch"]["version"] == "2.13.0+cpu"
        assert not [name for name in resolved if name.startswith("nvidia-")]


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
    """ci/install.sh (uv) hands pip's wheel directories to uv: no CUDA packages."""
    resolved = _resolve(uv_bin, tmp_path, "./packages/trainers-rl", "./packages/model-merger")
    assert resolved["torch"] == "2.13.0+cpu"
    assert not [name for name in resolved if name.startswith("nvidia-")]
