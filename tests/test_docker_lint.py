"""ci/docker_lint.py passes on the repository and fails on each kind of broken input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT = ROOT / "ci" / "docker_lint.py"


def _lint(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(LINT), *args],
                          capture_output=True,
                          text=True,
                          cwd=ROOT,
                          check=False)


def test_repository_files_pass() -> None:
    result = _lint()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "pass hadolint" in result.stdout


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("FROM ubuntu:24.04\nUSER root\nCMD [\"bash\"]\n", "DL3002"),
        ("FROM ubuntu:24.04\nCMD [\"bash\"]\n", "sets no USER, so it runs as root"),
        ("FROM ubuntu:24.04 AS build\nUSER 1000\nFROM ubuntu:24.04\nCMD [\"bash\"]\n",
         "final stage sets no USER"),
    ],
    ids=["explicit-root", "no-user", "root-final-stage"],
)
def test_dockerfile_running_as_root_fails(tmp_path: Path, text: str, expected: str) -> None:
    dockerfile = tmp_path / "bad.Dockerfile"
    dockerfile.write_text(text)
    result = _lint("--dockerfile", str(dockerfile))
    assert result.returncode == 1
    assert expected in result.stdout


def test_compose_file_with_misspelt_key_fails(tmp_path: Path) -> None:
    text = (ROOT / "compose" / "compose.yaml").read_text()
    assert "    healthcheck:\n" in text
    broken = tmp_path / "compose.yaml"
    broken.write_text(text.replace("    healthcheck:\n", "    healthchek:\n", 1))
    result = _lint("--compose", str(broken))
    assert result.returncode == 1
    assert "healthchek" in result.stdout
    assert "docker-compose failed" in result.stdout
    assert "check-jsonschema failed" in result.stdout


def test_workflow_with_unknown_runner_label_fails(tmp_path: Path) -> None:
    text = (ROOT / ".github" / "workflows" / "ci.yml").read_text()
    assert "[self-hosted, linux, x64, gpu]" in text
    broken = tmp_path / "ci.yml"
    broken.write_text(
        text.replace("[self-hosted, linux, x64, gpu]", "[self-hosted, linux, x64, tpu]"))
    result = _lint("--workflow", str(broken))
    assert result.returncode == 1
    assert 'label "tpu" is unknown' in result.stdout


def test_workflow_schema_violation_fails(tmp_path: Path) -> None:
    broken = tmp_path / "bad.yml"
    broken.write_text("on: push\njobs:\n  a:\n    runs-on: [self-hosted]\n    stepz: []\n")
    result = _lint("--workflow", str(broken))
    assert result.returncode == 1
    assert "stepz" in result.stdout


def test_shell_script_with_unquoted_variable_fails(tmp_path: Path) -> None:
    script = tmp_path / "bad.sh"
    script.write_text("#!/usr/bin/env bash\nrm -rf $1/build\n")
    result = _lint("--shell", str(script))
    assert result.returncode == 1
    assert "SC2086" in result.stdout
