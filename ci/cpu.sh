#!/usr/bin/env bash
# CPU CI job: lint, every unmarked test, mypy over every package, container/CI file lint.
set -euo pipefail
cd "$(dirname "$0")/.."
make .venv/.tools-stamp
.venv/bin/nox -s lint tests typecheck docker_lint
