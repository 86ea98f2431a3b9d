"""Lint the container and CI files with the real tools; no Docker engine needed.

    python ci/docker_lint.py                      # everything in the repository
    python ci/docker_lint.py --dockerfile F ...   # only the files named (also --compose,
                                                  # --workflow, --shell)

- Dockerfiles: hadolint (failure threshold: warning), and every Dockerfile must end its final
  stage as a non-root USER (hadolint's DL3002 only fires on an explicit `USER root`);
- compose: `docker-compose config` (Compose v2) with every profile enabled, and the
  compose-spec JSON schema (check-jsonschema);
- workflows: actionlint (with .github/actionlint.yaml's runner labels) and the GitHub
  workflow JSON schema;
- shell scripts: shellcheck.

Exits 1 listing every failure, 0 when all pass.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "compose" / "compose.yaml"
ACTIONLINT_CONFIG = ROOT / ".github" / "actionlint.yaml"


def _tool(name: str) -> str:
    path = shutil.which(name, path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    if path is None:
        raise SystemExit(f"{name} is not installed: run `nox -s docker_lint` "
                         f"(it installs ci/dev-requirements.txt)")
    return path


def _run(label: str, cmd: list[str], env: dict[str, str] | None = None) -> str | None:
    """Run ``cmd``; on failure return a report naming ``label`` and the tool's output."""
    proc = subprocess.run(cmd,
                          capture_output=True,
                          text=True,
                          cwd=ROOT,
                          env={
                              **os.environ,
                              **(env or {})
                          },
                          check=False)
    if proc.returncode == 0:
        return None
    output = (proc.stdout + proc.stderr).strip()
    return f"{label}: {Path(cmd[0]).name} failed (exit {proc.returncode})\n{output}"


_USER = re.compile(r"^\s*USER\s+(\S+)", re.IGNORECASE | re.MULTILINE)
_FROM = re.compile(r"^\s*FROM\s", re.IGNORECASE | re.MULTILINE)


def final_user_problem(path: Path) -> str | None:
    """Why the final stage of Dockerfile ``path`` would run as root, or None."""
    text = path.read_text(encoding="utf-8")
    stages = list(_FROM.finditer(text))
    final_stage = text[stages[-1].start():] if stages else text
    users = _USER.findall(final_stage)
    if not users:
        return f"{path}: final stage sets no USER, so it runs as root; end it with a non-root USER"
    user = users[-1].split(":")[0]
    if user in ("root", "0"):
        return f"{path}: final stage runs as root (USER {users[-1]}); end it with a non-root USER"
    return None


def lint_dockerfiles(paths: list[Path]) -> list[str]:
    hadolint = _tool("hadolint")
    failures = []
    for path in paths:
        failures.append(_run(str(path), [hadolint, "--failure-threshold", "warning", str(path)]))
        failures.append(final_user_problem(path))
    return [f for f in failures if f]


def lint_compose(path: Path) -> list[str]:
    failures = [
        _run(str(path),
             [_tool("docker-compose"), "-f",
              str(path), "--profile", "*", "config", "--quiet"]),
        _run(str(path),
             [_tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec",
              str(path)]),
    ]
    return [f for f in failures if f]


def lint_workflows(paths: list[Path]) -> list[str]:
    if not paths:
        return []
    files = [str(p) for p in paths]
    failures = [
        _run(", ".join(files), [
            _tool("actionlint"), "-config-file",
            str(ACTIONLINT_CONFIG), "-shellcheck",
            _tool("shellcheck"), *files
        ]),
        _run(", ".join(files),
             [_tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", *files]),
    ]
    return [f for f in failures if f]


def lint_shell(paths: list[Path]) -> list[str]:
    if not paths:
        return []
    failure = _run(", ".join(map(str, paths)), [_tool("shellcheck"), *map(str, paths)])
    return [failure] if failure else []


def repository_files() -> dict[str, list[Path]]:
    return {
        "dockerfile": sorted((ROOT / "docker").glob("*.Dockerfile")),
        "compose": [COMPOSE_FILE],
        "workflow": sorted((ROOT / ".github" / "workflows").glob("*.y*ml")),
        "shell": sorted([*(ROOT / "ci").glob("*.sh"), ROOT / ".ci" / "run"]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for kind in ("dockerfile", "compose", "workflow", "shell"):
        parser.add_argument(f"--{kind}", nargs="+", type=Path, default=None)
    args = parser.parse_args(argv)
    chosen = {k: v for k, v in vars(args).items() if v is not None}
    files = chosen or repository_files()
    failures: list[str] = []
    failures += lint_dockerfiles(files.get("dockerfile", []))
    for compose in files.get("compose", []):
        failures += lint_compose(compose)
    failures += lint_workflows(files.get("workflow", []))
    failures += lint_shell(files.get("shell", []))
    checked = sum(len(v) for v in files.values())
    if failures:
        print("\n\n".join(failures))
        print(f"\ndocker_lint: {len(failures)} problem(s) in {checked} file(s)")
        return 1
    print(f"docker_lint: {checked} file(s) pass hadolint, compose config, actionlint, "
          "check-jsonschema and shellcheck")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
