"""ci/images.py's logic, without an engine: the service/smoke table against the real compose
file, non-root detection from real inspect shapes, and failures that name image and check.

The builds themselves run in `nox -s images` (and the GPU workflow); these run in CI.
"""

from __future__ import annotations

import gzip
import importlib.util
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "ci" / "images.py"
_spec = importlib.util.spec_from_file_location("ci_images", SCRIPT)
assert _spec is not None and _spec.loader is not None
images = importlib.util.module_from_spec(_spec)
sys.modules["ci_images"] = images
_spec.loader.exec_module(images)

PREFIX, TAG = "trainyard", "latest"


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    return images.compose_services(images.COMPOSE_FILE, PREFIX, TAG)


def _image_cmds() -> dict[str, list[str]]:
    """Each image's CMD from its Dockerfile (services without a command run it)."""
    return {name: images.dockerfile_cmd(images.default_dockerfile(name)) for name in images.IMAGES}


def test_every_compose_service_on_our_images_has_a_smoke_running_its_program(
        services: dict[str, Any]) -> None:
    assert images.service_problems(services, PREFIX, TAG, _image_cmds()) == {}


def test_smoke_table_has_no_entry_for_a_service_compose_lacks(services: dict[str, Any]) -> None:
    ours = {name for name, s in services.items() if images.our_image(s.get("image", ""), PREFIX)}
    assert ours == set(images.SERVICE_SMOKES)


def test_the_seed_services_are_in_compose_on_the_right_images(services: dict[str, Any]) -> None:
    expected = {
        "train": "trainers-rl",
        "train-carla": "trainers-rl",
        "evaluation": "trainers-rl",
        "tensorboard": "trainers-rl",
        "env-server": "env-servers",
        "eval-runner": "env-servers",
        "model-merger": "model-merger",
        "formatter": "tools",
        "notebook": "tools",
    }
    found = {name: images.our_image(services[name]["image"], PREFIX) for name in expected}
    assert found == expected


def test_a_service_without_a_smoke_entry_fails_naming_service_and_image() -> None:
    services = {"new-job": {"image": "trainyard/trainers-rl:latest", "command": ["x"]}}
    problems = images.service_problems(services, PREFIX, TAG, {})
    assert list(problems) == ["trainers-rl"]
    (message,) = problems["trainers-rl"]
    assert message.startswith("service:new-job: no smoke entry")
    assert "trainyard/trainers-rl:latest" in message


def test_a_service_running_another_program_than_its_smoke_fails() -> None:
    services = {
        "train": {
            "image": "trainyard/trainers-rl:latest",
            "command": ["trainers-rl", "ppo", "--config", "configs/train/ppo_cartpole.yaml"]
        }
    }
    (message,) = images.service_problems(services, PREFIX, TAG, {})["trainers-rl"]
    assert message.startswith("service:train:")
    assert "does not run 'trainers-rl train'" in message


def test_services_on_other_images_are_not_ours() -> None:
    assert images.our_image("carlasim/carla:0.9.16", PREFIX) is None
    assert images.our_image("trainyard/trainers-rl:latest", PREFIX) == "trainers-rl"
    assert images.our_image("localhost/trainyard/tools:v1", PREFIX) == "tools"
    assert images.our_image("trainyard/unknown:latest", PREFIX) is None
    assert images.service_problems({"carla": {
        "image": "carlasim/carla:0.9.16"
    }}, PREFIX, TAG, {}) == {}


def test_shell_form_commands_are_split_into_the_programs_they_run() -> None:
    merger = ["sh", "-c", 'set -- model-merger merge --local-dir "$LOCAL_DIR"; exec "$@"']
    assert images.runs_program(merger, ("model-merger", "merge"))
    assert not images.runs_program(merger, ("model-merger", "upload"))
    notebook = ["sh", "-c", 'test -n "$T" || { echo no >&2; exit 2; }; exec jupyter lab --ip=0']
    assert images.runs_program(notebook, ("jupyter", "lab"))
    env_cmd = images.dockerfile_cmd(ROOT / "docker" / "env-servers.Dockerfile")
    assert images.runs_program(env_cmd, ("env-servers", "serve"))


# Trimmed from real `docker image inspect` and `buildah inspect --type image` output.
DOCKER_INSPECT = [{"Id": "sha256:abc", "Config": {"User": "1000:1000", "Cmd": ["bash"]}}]
BUILDAH_INSPECT = {
    "Type": "buildah 0.0.1",
    "OCIv1": {
        "config": {
            "User": "1000:1000"
        }
    },
    "Docker": {
        "config": {
            "User": "1000:1000",
            "Entrypoint": ["/usr/bin/tini", "--"],
            "Cmd": ["bash"],
            "Healthcheck": {
                "Test": ["CMD", "python3", "-c", "pass"]
            }
        }
    },
}


@pytest.mark.parametrize(("inspect", "root"), [
    (DOCKER_INSPECT, False),
    (BUILDAH_INSPECT, False),
    ([{
        "Config": {
            "User": ""
        }
    }], True),
    ([{
        "Config": {
            "User": "root"
        }
    }], True),
    ([{
        "Config": {
            "User": "0:0"
        }
    }], True),
    ({
        "Docker": {
            "config": {
                "User": "root:root"
            }
        }
    }, True),
    ({
        "Docker": {
            "config": {}
        }
    }, True),
    ([{
        "Config": {
            "User": "trainer"
        }
    }], False),
])
def test_root_is_detected_from_the_inspect_config(inspect: Any, root: bool) -> None:
    assert images.is_root_user(images.config_user(inspect)) is root


def test_inspect_without_a_config_is_refused_with_what_was_expected() -> None:
    with pytest.raises(ValueError, match="expected `docker image inspect`"):
        images.image_config({"Id": "x"})


def test_healthcheck_and_start_command_come_from_the_config() -> None:
    config = images.image_config(BUILDAH_INSPECT)
    assert images.healthcheck_argv(config) == ["python3", "-c", "pass"]
    assert images.start_argv(config) == ["/usr/bin/tini", "--", "bash"]
    assert images.healthcheck_argv({"Healthcheck": {
        "Test": ["CMD-SHELL", "curl -f x"]
    }}) == ["/bin/sh", "-c", "curl -f x"]
    assert images.healthcheck_argv({"Healthcheck": {"Test": ["NONE"]}}) is None
    assert images.healthcheck_argv({}) is None


def test_smoke_results_are_judged_by_exit_status_and_output() -> None:
    ok = images.Smoke(("trainers-rl", "train", "--check"))
    assert images.smoke_failure(ok, 0, "all checks passed") is None
    assert "exited 2" in images.smoke_failure(ok, 2, "error: onnx is not installed")
    assert "traceback" in images.smoke_failure(ok, 0, "Traceback (most recent call last):\n")
    must_fail = images.Smoke(("carla-env", "check"), succeed=False, match="no CARLA server")
    assert images.smoke_failure(must_fail, 1, "error: no CARLA server answered") is None
    assert "expected it to fail" in images.smoke_failure(must_fail, 0, "CARLA server 0.9.16")
    assert "did not start" in images.smoke_failure(must_fail, 1,
                                                   "ModuleNotFoundError: No module named 'carla'")
    assert "without matching" in images.smoke_failure(must_fail, 1, "error: bad flag")


def test_failures_name_the_image_and_the_check_and_the_table_shows_each() -> None:
    good = images.Result("env-servers", build_s=61.0, size=9_100_000_000)
    good.ok("non-root")
    good.ok("healthcheck")
    bad = images.Result("trainers-rl", build_s=None, size=None)
    bad.fail("non-root", "final USER is 'root': the image runs as root")
    bad.ok("service:train")
    assert images.failure_lines(
        [good, bad]) == ["FAIL trainers-rl non-root: final USER is 'root': the image runs as root"]
    table = images.summary_table([good, bad]).splitlines()
    assert table[0].split() == ["image", "build", "size", "checks"]
    assert re.match(r"env-servers\s+61s\s+9.10 GB\s+non-root ok, healthcheck ok", table[1])
    assert re.match(r"trainers-rl\s+cached/skipped\s+\?\s+non-root FAIL, service:train ok",
                    table[2])


def test_sizes_as_engines_print_them_are_parsed() -> None:
    assert images.parse_size("5.07 GB") == 5_070_000_000
    assert images.parse_size("830 MB") == 830_000_000
    assert images.parse_size("2 GiB") == 2 * 2**30
    assert images.parse_size("12345") == 12345
    with pytest.raises(ValueError, match="expected a number"):
        images.parse_size("large")


def test_the_cuda_base_is_pinned_to_a_cuda_13_0_update_on_ubuntu_24_04() -> None:
    name = images.cuda_image(ROOT / "docker" / "base.Dockerfile")
    assert re.fullmatch(r"nvidia/cuda:13\.0\.(\d+)-cudnn-runtime-ubuntu24\.04", name)
    assert name != "nvidia/cuda:13.0.0-cudnn-runtime-ubuntu24.04"  # retired once 13.0.x shipped


def test_packages_index_stanza_is_found_by_name() -> None:
    index = gzip.decompress(
        gzip.compress(b"Package: apt\nVersion: 1\nSHA256: aa\n\n"
                      b"Package: ubuntu-keyring\nVersion: 2023.11.28.1\n"
                      b"Filename: pool/main/u/k.deb\nSHA256: bb\n")).decode()
    entry = images.packages_entry(index, "ubuntu-keyring")
    assert (entry["Filename"], entry["SHA256"]) == ("pool/main/u/k.deb", "bb")
    with pytest.raises(images.ImagesError, match="nope is not in the noble Packages index"):
        images.packages_entry(index, "nope")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args],
                          capture_output=True,
                          text=True,
                          cwd=ROOT,
                          check=False)


def test_a_bad_dockerfile_override_is_one_line_naming_it() -> None:
    result = _cli("--dockerfile", "trainers-rl", "--skip-build")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "images: --dockerfile 'trainers-rl': expected IMAGE=PATH with IMAGE one of " +
        ", ".join(images.IMAGES))
    missing = _cli("--dockerfile", "trainers-rl=/nonexistent.Dockerfile", "--skip-build")
    assert missing.returncode == 1
    assert "/nonexistent.Dockerfile is not a file" in missing.stderr


def test_an_unknown_image_is_refused_by_the_parser() -> None:
    result = _cli("--only", "nope")
    assert result.returncode == 2
    assert "invalid choice: 'nope'" in result.stderr


def test_smoke_commands_reference_configs_that_exist() -> None:
    for entry in images.SERVICE_SMOKES.values():
        for smoke in entry.smokes:
            for arg in smoke.argv:
                if arg.startswith("configs/"):
                    assert (ROOT / arg).is_file(), arg


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_health_script_passes_against_a_real_server_and_stops_it(tmp_path: Path) -> None:
    port = _port()
    start = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)]
    probe = [
        sys.executable, "-c", f"import urllib.request; urllib.request.urlopen("
        f"'http://127.0.0.1:{port}/', timeout=2)"
    ]
    ran = subprocess.run(["sh", "-c", images.health_script(start, probe, 30)],
                         capture_output=True,
                         text=True,
                         cwd=tmp_path,
                         timeout=60,
                         check=False)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "images: healthy" in ran.stdout
    with socket.socket() as sock:  # the server was stopped: nothing listens on the port
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is fine
        sock.bind(("127.0.0.1", port))


def test_health_script_fails_when_the_service_exits_or_never_answers() -> None:
    probe = [sys.executable, "-c", "raise SystemExit(1)"]
    exited = subprocess.run(["sh", "-c", images.health_script(["false"], probe, 30)],
                            capture_output=True,
                            text=True,
                            timeout=60,
                            check=False)
    assert exited.returncode == 3
    assert "the service exited" in exited.stdout
    silent = subprocess.run(
        ["sh", "-c", images.health_script(["sleep", "30"], probe, 3)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False)
    assert silent.returncode == 1
    assert "not healthy within 3s" in silent.stdout
