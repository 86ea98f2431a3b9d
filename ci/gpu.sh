#!/usr/bin/env bash
# GPU CI job (self-hosted runner with Docker, the NVIDIA Container Toolkit and a GPU):
# build every image on the real CUDA base and check each runs its compose services' commands
# (`nox -s images`), start CARLA, run the tests marked gpu, carla or docker.
set -euo pipefail
cd "$(dirname "$0")/.."
make .venv/.tools-stamp
.venv/bin/nox -s images -- --engine docker
make carla-up
.venv/bin/nox -s tests -- -m "gpu or carla or docker" packages tests
