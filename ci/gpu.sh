#!/usr/bin/env bash
# GPU CI job (self-hosted runner with Docker, the NVIDIA Container Toolkit and a GPU):
# build every image, start CARLA, run the tests marked gpu, carla or docker.
set -euo pipefail
cd "$(dirname "$0")/.."
make docker-build
make carla-up
make .venv/.tools-stamp
.venv/bin/nox -s tests -- -m "gpu or carla or docker" packages tests
