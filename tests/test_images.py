"""Built images (after `make docker-build` or `nox -s images`): non-root, CLIs work, servers
report health.

Marked `docker`: the self-hosted GPU workflow runs them (ci/gpu.sh, after `nox -s images`
built the images on the real CUDA base); they need an engine. Without one, `nox -s images`
checks the same and more (every compose service's command) with buildah.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
import trainyard_ci_packages as ci_packages

pytestmark = pytest.mark.docker

PREFIX = os.environ.get("IMAGE_PREFIX", "trainyard")
TAG = os.environ.get("TAG", "latest")
# image -> the console command it must answer with: each package image's command of its name
CLIS = {
    p.folder: p.folder
    for p in ci_packages.load(Path(__file__).resolve().parent.parent)
    if p.has_image
}


def _docker(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args],
                          capture_output=True,
                          text=True,
                          timeout=timeout,
                          check=False)


@pytest.mark.parametrize("package", sorted(CLIS))
def test_image_runs_as_non_root_and_cli_answers(package: str) -> None:
    image = f"{PREFIX}/{package}:{TAG}"
    uid = _docker("run", "--rm", image, "id", "-u")
    assert uid.returncode == 0, uid.stderr
    assert uid.stdout.strip() != "0"
    help_ = _docker("run", "--rm", image, CLIS[package], "--help")
    assert help_.returncode == 0, help_.stderr


def test_env_server_image_becomes_healthy() -> None:
    image = f"{PREFIX}/env-servers:{TAG}"
    inspect = json.loads(_docker("image", "inspect", image).stdout)
    assert inspect[0]["Config"]["Healthcheck"]["Test"]
    started = _docker("run", "-d", "--rm", image)
    assert started.returncode == 0, started.stderr
    container = started.stdout.strip()
    try:
        deadline = time.monotonic() + 90
        status = ""
        while time.monotonic() < deadline:
            status = _docker("inspect", "-f", "{{.State.Health.Status}}", container).stdout.strip()
            if status == "healthy":
                break
            time.sleep(2)
        assert status == "healthy"
    finally:
        _docker("rm", "-f", container)


@pytest.mark.gpu
def test_training_image_sees_the_gpu() -> None:
    result = _docker("run", "--rm", "--gpus", "all", f"{PREFIX}/trainers-rl:{TAG}", "python3", "-c",
                     "import torch; assert torch.cuda.is_available(); print(torch.version.cuda)")
    assert result.returncode == 0, result.stderr
