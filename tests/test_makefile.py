"""The Makefile's contract: help lists every target, guards fail fast with exit 2."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import trainyard_ci_packages as ci_packages

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = [p.folder for p in ci_packages.load(ROOT) if p.has_image]
TARGETS = [
    "help", "setup", "train", "test", "lint", "format", "typecheck", "docker-lint", "bench",
    "docker-build", "docker-build-base", *[f"docker-build-{p}" for p in PACKAGES],
    "docker-train-shell", "docker-merge", "docker-format", "docker-env", "docker-eval",
    "docker-clean", "carla-up", "carla-down", "tensorboard", "notebook", "images-check",
    "docker-build-train", "docker-build-scripts"
]


def _make(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    # An unreachable engine address makes `docker info` fail wherever this runs.
    full_env = {**os.environ, "DOCKER_HOST": "unix:///nonexistent/docker.sock", **env}
    full_env.pop("JUPYTER_TOKEN", None)
    full_env.pop("LOCAL_DIR", None)
    return subprocess.run(["make", "--no-print-directory", *args],
                          cwd=ROOT,
                          env=full_env,
                          capture_output=True,
                          text=True,
                          timeout=60,
                          check=False)


def test_help_is_default_and_lists_every_target() -> None:
    result = _make()
    assert result.returncode == 0, result.stderr
    listed = set(re.findall(r"^\s+(?:\x1b\[36m)?([a-z0-9-]+)", result.stdout, re.MULTILINE))
    assert set(TARGETS) <= listed, sorted(set(TARGETS) - listed)


def test_docker_merge_without_local_dir_exits_2_naming_it() -> None:
    result = _make("docker-merge")
    assert result.returncode == 2
    assert "LOCAL_DIR is required" in result.stderr
    assert "docker" not in result.stdout  # nothing ran before the check


@pytest.mark.parametrize("target", [
    "docker-build", "docker-build-base", "docker-build-env-servers", "docker-train-shell",
    "carla-up"
])
def test_docker_targets_without_engine_say_so_in_one_line(target: str) -> None:
    result = _make(target)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert "No Docker engine is running" in lines[0]
    assert result.stdout == ""


def test_notebook_refuses_to_start_without_token(tmp_path: Path) -> None:
    result = _make("notebook")
    assert result.returncode == 2
    assert "JUPYTER_TOKEN is required" in result.stderr
