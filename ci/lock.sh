#!/usr/bin/env bash
# Regenerate constraints.txt: every package's dependencies and every tool, pinned, for
# Python 3.11 and 3.12 on any platform. Our own packages are left out: they install from
# their local paths, never from an index.
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t projects < <(ls packages/*/pyproject.toml)
exclude=()
for project in "${projects[@]}"; do
  name=$(sed -n 's/^name = "\(.*\)"$/\1/p' "$project")
  exclude+=(--no-emit-package "$name")
done
uv pip compile --universal --python-version 3.11 --all-extras --quiet \
  --no-header --custom-compile-command "make constraints" \
  "${projects[@]}" ci/dev-requirements.txt ci/bootstrap-requirements.txt ci/tools-requirements.txt ci/bench-requirements.txt \
  "${exclude[@]}" --constraint <(echo "torch==2.13.0") --output-file constraints.body
{
  echo "# The one set of versions nox, the Dockerfiles and CI install (regenerate: make constraints)."
  echo "# torch==2.13.0 is a CUDA build from PyPI in the GPU images and the CPU build where pip's"
  echo "# configuration serves one (see ci/install.sh)."
  grep -v '^ *#' constraints.body
} > constraints.txt
rm constraints.body
