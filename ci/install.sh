#!/usr/bin/env bash
# The one way trainyard installs Python packages: uv, pinned by constraints.txt.
# Used by `make setup`, every nox session and every Dockerfile.
#
#   ci/install.sh [uv pip install arguments...]   e.g. ci/install.sh ./packages/carla-env
#
# uv does not read pip's configuration. Where pip is configured with extra wheel
# directories (PIP_FIND_LINKS, e.g. a local CPU build of torch), they are passed on, so uv
# takes the same wheels pip would instead of resolving CUDA builds from the index.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [[ -z "${UV_FIND_LINKS:-}" ]]; then
  links=${PIP_FIND_LINKS:-$(pip config get global.find-links 2>/dev/null || true)}
  if [[ -n "$links" ]]; then
    export UV_FIND_LINKS=$links
  fi
fi
if [[ -z "${SSL_CERT_FILE:-}" && -n "${PIP_CERT:-}" ]]; then
  export SSL_CERT_FILE=$PIP_CERT
fi
uv=${UV:-uv}
exec "$uv" pip install --constraint "$root/constraints.txt" "$@"
