"""Build every image and check that each one runs what its compose services run.

    python ci/images.py                                  # build base + every image, check all
    python ci/images.py --only trainers-rl               # one image (the base must exist)
    python ci/images.py --dockerfile trainers-rl=F --only trainers-rl   # a variant Dockerfile,
                                                         # tagged <image>:<TAG>-variant
    python ci/images.py --skip-build                     # check images already built
    python ci/images.py --engine buildah                 # docker | buildah | auto (default)

Why: an image that builds is not an image that works. A missing extra (onnx for the main
job's export, the carla client for the CARLA job) only shows when the service's command runs,
so every command each compose service runs is started here, in the image that service uses.

Where `docker info` answers the images are built with `docker build`. Without an engine they
are built with buildah (chroot isolation, no pulls) on a stand-in for the CUDA base: an Ubuntu
24.04 rootfs made by mmdebstrap and tagged with the exact name the base Dockerfile's FROM uses.
The stand-in has no CUDA libraries; everything the images install on top is real.

Checks per image, each failure naming the image and the check:
- ``non-root``: the image config's final user is not root (and `id -u` inside agrees);
- ``healthcheck``: where the image declares one, its own command passes against the service
  started as the image's CMD would start it;
- ``service:<name>``: each compose service using the image has an entry in SERVICE_SMOKES that
  runs the same program as the service, and that smoke passes in the image.

Exits 1 when any check fails, after a summary table (build time, size, each check).
"""

from __future__ import annotations

import abc
import argparse
import dataclasses
import gzip
import hashlib
import importlib.util
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import types
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _load_ci_packages() -> types.ModuleType:
    """ci/packages.py, the one package list: a script beside this one, so loaded by path (the
    noxfile and the tests load it under the same module name)."""
    name = "trainyard_ci_packages"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("packages.py"))
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while the file runs
        spec.loader.exec_module(module)
    return sys.modules[name]


ci_packages = _load_ci_packages()
ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "compose" / "compose.yaml"
# The package images, from packages/*/pyproject.toml ([tool.trainyard] image).
PACKAGE_IMAGES = {p.folder: p for p in ci_packages.load(ROOT) if p.has_image}
# Build order: the base first, tools last (it extends the trainers-rl image).
IMAGES = ["base", *PACKAGE_IMAGES, "tools"]
# The image each image's BASE_IMAGE names (none for the base itself).
PARENTS = {name: "base" for name in IMAGES if name != "base"} | {"tools": "trainers-rl"}


def default_dockerfile(name: str) -> Path:
    """The Dockerfile image ``name`` builds from: its own for base and tools, else the one its
    package's pyproject names (docker/package.Dockerfile unless it has its own)."""
    package = PACKAGE_IMAGES.get(name)
    if package is None:
        return ROOT / "docker" / f"{name}.Dockerfile"
    return ROOT / str(package.dockerfile)


def build_args(name: str, prefix: str, tag: str) -> dict[str, str]:
    """``name``'s build arguments: BASE_IMAGE (its parent) and, for a package, PACKAGE."""
    args = {}
    parent = PARENTS.get(name)
    if parent:
        args["BASE_IMAGE"] = image_ref(parent, prefix, tag)
    if name in PACKAGE_IMAGES:
        args["PACKAGE"] = name
    return args


UBUNTU_MIRROR = "http://archive.ubuntu.com/ubuntu"  # apt checks what it fetches with the keyring
# The keyring itself comes over TLS: its sha256 is only as trustworthy as the index naming it.
UBUNTU_TLS_MIRROR = "https://archive.ubuntu.com/ubuntu"
UBUNTU_SUITE = "noble"
STANDIN_LABEL = "org.trainyard.cuda-standin"
# ubuntu-keyring: the image's own apt (the Dockerfiles' apt-get update) needs the archive key.
STANDIN_PACKAGES = ["apt", "ubuntu-keyring", "python3", "python3-venv", "ca-certificates"]
# The real CUDA images ship user ubuntu (1000:1000); the base Dockerfile removes it.
STANDIN_USER_HOOK = (
    'chroot "$1" groupadd --gid 1000 ubuntu && '
    'chroot "$1" useradd --uid 1000 --gid 1000 --create-home --shell /bin/bash ubuntu')
# Output that means a command did not start: a missing module, an unhandled exception.
NOT_STARTED = r"Traceback \(most recent call last\)|ImportError|ModuleNotFoundError"


class ImagesError(Exception):
    """A failure that stops the run before checks (a missing tool, a failed build)."""


# ---- the smoke table ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Smoke:
    """One command run in an image. ``succeed=False``: it must fail, the way ``match`` says."""

    argv: tuple[str, ...]
    succeed: bool = True
    match: str | None = None
    timeout: float = 300.0
    env: tuple[tuple[str, str], ...] = ()


@dataclasses.dataclass(frozen=True)
class ServiceSmoke:
    """How to show a compose service's command starts: ``program`` is what the service runs
    (checked against its command), ``smokes`` run that program (or, with ``health``, the
    image's CMD is started and its healthcheck polled)."""

    program: tuple[str, ...]
    smokes: tuple[Smoke, ...] = ()
    health: bool = False


CLOSED_PORT = "CLOSED_PORT"  # replaced by a port nothing listens on when the smoke runs

SERVICE_SMOKES: dict[str, ServiceSmoke] = {
    "train":
        ServiceSmoke(
            ("trainers-rl", "train"),
            (
                Smoke(
                    ("trainers-rl", "train", "--config", "configs/train/driving.yaml", "--check")),
                # W&B where --use-wandb is offered; offline, as compose's WANDB_MODE default
                Smoke(("trainers-rl", "train", "--config", "configs/train/driving.yaml", "--check",
                       "--use-wandb"),
                      env=(("WANDB_MODE", "offline"),)),
            )),
    "train-carla":
        ServiceSmoke(
            ("trainers-rl", "train"),
            (
                Smoke(("trainers-rl", "train", "--config", "configs/train/driving_carla.yaml",
                       "rl.ppo.num_envs=1", "--check")),  # as compose runs it: one server
                Smoke(("carla-env", "check", "--carla-host", "127.0.0.1", "--carla-port",
                       CLOSED_PORT, "--carla-timeout", "2"),
                      succeed=False,
                      match=r"no CARLA server answered"),
            )),
    "evaluation":
        ServiceSmoke(
            ("trainers-rl", "evaluate"),
            (
                Smoke(
                    ("trainers-rl", "evaluate", "--episodes", "1", "--video", "none",
                     "--output-dir", "eval-smoke"),  # under the image's WORKDIR, /workspace
                    timeout=600),)),
    "tensorboard":
        ServiceSmoke(("tensorboard",), (Smoke(("tensorboard", "--version")),)),
    "env-server":
        ServiceSmoke(("env-servers", "serve"), health=True),
    "eval-runner":
        ServiceSmoke(("python", "-m", "env_servers.eval"), (Smoke(
            ("python", "-m", "env_servers.eval", "--help")),)),
    "model-merger":
        ServiceSmoke(("model-merger", "merge"), (Smoke(("model-merger", "merge", "--help")),)),
    "formatter":
        ServiceSmoke(("yapf",), (Smoke(("yapf", "--version")),)),
    "notebook":
        ServiceSmoke(("jupyter", "lab"), (Smoke(("jupyter", "lab", "--version")),)),
}

# ---- pure logic (unit-tested without an engine) --------------------------------------------


def image_ref(name: str, prefix: str, tag: str) -> str:
    return f"{prefix}/{name}:{tag}"


def our_image(ref: str, prefix: str) -> str | None:
    """The name in IMAGES of a compose ``image:`` reference, or None if it is not ours."""
    repo = ref.rsplit(":", 1)[0] if ":" in ref.rsplit("/", 1)[-1] else ref
    for lead in ("docker.io/", "localhost/"):
        repo = repo.removeprefix(lead)
    if not repo.startswith(prefix + "/"):
        return None
    name = repo[len(prefix) + 1:]
    return name if name in IMAGES else None


def command_tokens(command: Sequence[str]) -> list[str]:
    """A service's command as words: a `sh -c SCRIPT` form is split into the script's words."""
    words: list[str] = []
    items = list(command)
    i = 0
    while i < len(items):
        shell = items[i] in ("sh", "bash", "/bin/sh", "/bin/bash")
        if shell and items[i + 1:i + 2] == ["-c"] and i + 2 < len(items):
            lexer = shlex.shlex(items[i + 2], posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            words += list(lexer)
            i += 3
        else:
            words.append(items[i])
            i += 1
    return words


def runs_program(command: Sequence[str], program: Sequence[str]) -> bool:
    """True when ``program``'s words appear, in order and adjacent, in ``command``'s words."""
    words, n = command_tokens(command), len(program)
    return any(tuple(words[i:i + n]) == tuple(program) for i in range(len(words) - n + 1))


def is_root_user(user: str | None) -> bool:
    """Whether an image config's ``User`` runs as root (empty means root)."""
    name = (user or "").split(":", 1)[0].strip()
    return name in ("", "0", "root")


def config_user(inspect: dict[str, Any] | list[Any]) -> str:
    """The final user from `docker image inspect` (a list or its item) or `buildah inspect`."""
    return str(image_config(inspect).get("User") or "")


def image_config(inspect: dict[str, Any] | list[Any]) -> dict[str, Any]:
    """The Docker-style ``Config`` of an image from either engine's inspect output."""
    if isinstance(inspect, list):
        if not inspect:
            raise ValueError("empty inspect output: expected one image")
        inspect = inspect[0]
    item: dict[str, Any] = inspect if isinstance(inspect, dict) else {}
    if isinstance(item.get("Config"), dict):
        return item["Config"]  # docker image inspect
    docker = item.get("Docker", {}).get("config")
    if isinstance(docker, dict):
        return docker  # buildah inspect --type image
    oci = item.get("OCIv1", {}).get("config")
    if isinstance(oci, dict):
        return oci
    raise ValueError("inspect output has no Config, Docker.config or OCIv1.config: "
                     "expected `docker image inspect` or `buildah inspect --type image` JSON")


def healthcheck_argv(config: dict[str, Any]) -> list[str] | None:
    """The image's healthcheck as an argv (CMD form as is, CMD-SHELL through sh -c)."""
    test = (config.get("Healthcheck") or {}).get("Test") or []
    if not test or test[0] == "NONE":
        return None
    if test[0] == "CMD":
        return list(test[1:])
    if test[0] == "CMD-SHELL":
        return ["/bin/sh", "-c", " ".join(test[1:])]
    return list(test)


def start_argv(config: dict[str, Any]) -> list[str]:
    """What the image runs on start: its ENTRYPOINT followed by its CMD."""
    return list(config.get("Entrypoint") or []) + list(config.get("Cmd") or [])


def dockerfile_cmd(path: Path) -> list[str]:
    """The final JSON-form CMD of a Dockerfile (for services that run the image's CMD)."""
    cmd: list[str] = []
    for match in re.finditer(r"^CMD\s+(\[.*\])\s*$", path.read_text(encoding="utf-8"), re.M):
        cmd = json.loads(match.group(1))
    return cmd


def service_problems(services: dict[str, Any], prefix: str, tag: str,
                     image_cmds: dict[str, list[str]]) -> dict[str, list[str]]:
    """Per image, what is wrong with the smoke table for the compose services using it.

    ``image_cmds`` gives each image's start command, used for services without a command.
    """
    problems: dict[str, list[str]] = {}
    for name, service in sorted(services.items()):
        image = our_image(str(service.get("image", "")), prefix)
        if image is None:
            continue
        entry = SERVICE_SMOKES.get(name)
        if entry is None:
            problems.setdefault(image, []).append(
                f"service:{name}: no smoke entry in ci/images.py SERVICE_SMOKES for compose "
                f"service {name!r} (image {image_ref(image, prefix, tag)})")
            continue
        command = service.get("command") or image_cmds.get(image, [])
        if isinstance(command, str):
            command = shlex.split(command)
        if not runs_program(command, entry.program):
            problems.setdefault(image, []).append(
                f"service:{name}: its command {command!r} does not run "
                f"{' '.join(entry.program)!r}, the program its smoke checks")
        for smoke in entry.smokes[:1]:
            if tuple(smoke.argv[:len(entry.program)]) != entry.program:
                problems.setdefault(image, []).append(
                    f"service:{name}: smoke {' '.join(smoke.argv)!r} does not start "
                    f"{' '.join(entry.program)!r}")
    return problems


def parse_size(text: str) -> int:
    """Bytes from a size as engines print it ("5.07 GB", "830 MB", "12345")."""
    match = re.fullmatch(r"\s*([\d.]+)\s*([kKMGT]?i?B)?\s*", text)
    if not match:
        raise ValueError(f"size {text!r}: expected a number with an optional unit (kB, MB, GB)")
    units = {
        "": 1,
        "B": 1,
        "kB": 1e3,
        "KB": 1e3,
        "MB": 1e6,
        "GB": 1e9,
        "TB": 1e12,
        "KiB": 2**10,
        "MiB": 2**20,
        "GiB": 2**30,
        "TiB": 2**40
    }
    unit = match.group(2) or ""
    if unit not in units:
        raise ValueError(f"size {text!r}: unknown unit {unit!r}")
    return int(float(match.group(1)) * units[unit])


def smoke_failure(smoke: Smoke, returncode: int, output: str) -> str | None:
    """Why a smoke's result is a failure, or None when it passed."""
    shown = output.strip()[-1500:]
    if smoke.succeed:
        if returncode != 0:
            return f"`{' '.join(smoke.argv)}` exited {returncode}:\n{shown}"
        if re.search(NOT_STARTED, output):
            return f"`{' '.join(smoke.argv)}` printed a traceback:\n{shown}"
        return None
    if returncode == 0:
        return f"`{' '.join(smoke.argv)}` succeeded; expected it to fail:\n{shown}"
    if re.search(NOT_STARTED, output):
        return f"`{' '.join(smoke.argv)}` did not start (import error/traceback):\n{shown}"
    if smoke.match and not re.search(smoke.match, output):
        return f"`{' '.join(smoke.argv)}` failed without matching {smoke.match!r}:\n{shown}"
    return None


@dataclasses.dataclass
class Result:
    """One image's build and checks: check name -> None (passed) or the failure message."""

    image: str
    build_s: float | None = None
    size: int | None = None
    checks: dict[str, str | None] = dataclasses.field(default_factory=dict)

    def fail(self, check: str, message: str) -> None:
        self.checks[check] = message

    def ok(self, check: str) -> None:
        self.checks.setdefault(check, None)

    @property
    def failed(self) -> bool:
        return any(m is not None for m in self.checks.values())


def failure_lines(results: Sequence[Result]) -> list[str]:
    """One block per failed check, each starting `FAIL <image> <check>:`."""
    return [
        f"FAIL {r.image} {check}: {message}" for r in results
        for check, message in r.checks.items() if message is not None
    ]


def summary_table(results: Sequence[Result]) -> str:
    """Each image's build time, size and pass/fail per check."""
    rows = [("image", "build", "size", "checks")]
    for r in results:
        build = "cached/skipped" if r.build_s is None else f"{r.build_s:.0f}s"
        size = "?" if r.size is None else f"{r.size / 1e9:.2f} GB"
        checks = ", ".join(f"{c} {'ok' if m is None else 'FAIL'}" for c, m in r.checks.items())
        rows.append((r.image, build, size, checks or "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join(
        f"{a:<{widths[0]}}  {b:>{widths[1]}}  {c:>{widths[2]}}  {d}" for a, b, c, d in rows)


# ---- engines -------------------------------------------------------------------------------


def _need(tool: str, package: str) -> str:
    """The path of ``tool``, installing its Debian package when missing and we are root."""
    found = shutil.which(tool)
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print(f"images: {tool} missing, installing Debian package {package}", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", package],
                       env=env,
                       check=False,
                       stdout=subprocess.DEVNULL)
        found = shutil.which(tool)
    if not found:
        raise ImagesError(f"{tool} is not installed and could not be installed: run "
                          f"`apt-get install {package}` (as root)")
    return found


def pip_cert() -> str | None:
    """The CA bundle pip is configured with (PIP_CERT, else `pip config get global.cert`)."""
    cert = os.environ.get("PIP_CERT")
    if not cert:
        pip = shutil.which("pip") or shutil.which("pip3")
        if pip:
            proc = subprocess.run([pip, "config", "get", "global.cert"],
                                  capture_output=True,
                                  text=True,
                                  check=False)
            cert = proc.stdout.strip() if proc.returncode == 0 else None
    return cert if cert and Path(cert).is_file() else None


class Engine(abc.ABC):
    """Build, inspect and run images with one engine (docker or buildah)."""

    name = ""

    @abc.abstractmethod
    def build(self, dockerfile: Path, ref: str, args: dict[str, str], log: Path) -> None:
        """Build ``dockerfile`` as ``ref`` with these build args, output to ``log``."""

    @abc.abstractmethod
    def exists(self, ref: str) -> bool:
        """Whether ``ref`` is in this engine's image store."""

    @abc.abstractmethod
    def inspect(self, ref: str) -> dict[str, Any]:
        """The engine's inspect record of ``ref``."""

    @abc.abstractmethod
    def size(self, ref: str) -> int | None:
        """``ref``'s size in bytes (None when the engine does not say)."""

    @abc.abstractmethod
    def run(self, ref: str, argv: Sequence[str], env: dict[str, str],
            mounts: Sequence[tuple[Path, str]], timeout: float) -> Ran:
        """Run ``argv`` in a throwaway container of ``ref`` with these mounts (host, target)."""

    def _build_cmd(self, base: list[str], dockerfile: Path, ref: str, args: dict[str, str]) -> list:
        cmd = [*base, "-f", str(dockerfile), "-t", ref]
        for key, value in args.items():
            cmd += ["--build-arg", f"{key}={value}"]
        cert = pip_cert()
        if cert:
            cmd += ["--secret", f"id=ca,src={cert}"]
        return [*cmd, str(ROOT)]


def _stream(cmd: Sequence[str], log: Path, env: dict[str, str] | None = None) -> int:
    """Run ``cmd`` with its output going to ``log`` and this process's stdout."""
    with log.open("a", encoding="utf-8") as out:
        out.write(f"$ {shlex.join(cmd)}\n")
        out.flush()
        proc = subprocess.Popen(cmd,
                                stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT,
                                text=True,
                                env=env)
        assert proc.stdout is not None
        for line in proc.stdout:
            out.write(line)
            sys.stdout.write(line)
        out.flush()
        sys.stdout.flush()
        return proc.wait()


class Docker(Engine):
    name = "docker"

    def build(self, dockerfile: Path, ref: str, args: dict[str, str], log: Path) -> None:
        env = {**os.environ, "DOCKER_BUILDKIT": "1"}
        cmd = self._build_cmd(["docker", "build"], dockerfile, ref, args)
        if _stream(cmd, log, env) != 0:
            raise ImagesError(f"docker build of {ref} from {dockerfile} failed (log: {log})")

    def exists(self, ref: str) -> bool:
        return subprocess.run(["docker", "image", "inspect", ref], capture_output=True,
                              check=False).returncode == 0

    def inspect(self, ref: str) -> dict[str, Any]:
        out = subprocess.run(["docker", "image", "inspect", ref],
                             capture_output=True,
                             text=True,
                             check=True).stdout
        return json.loads(out)[0]

    def size(self, ref: str) -> int | None:
        return int(self.inspect(ref).get("Size") or 0) or None

    def run(self, ref: str, argv: Sequence[str], env: dict[str, str],
            mounts: Sequence[tuple[Path, str]], timeout: float) -> Ran:
        cmd = ["docker", "run", "--rm", "--network", "host"]
        for key, value in env.items():
            cmd += ["-e", f"{key}={value}"]
        for src, dst in mounts:
            cmd += ["-v", f"{src}:{dst}:ro"]
        cmd += ["--entrypoint", argv[0], ref, *argv[1:]]
        return _launch(cmd, timeout)


class Buildah(Engine):
    name = "buildah"

    def __init__(self) -> None:
        self.buildah = _need("buildah", "buildah")
        _need("newuidmap", "uidmap")

    def build(self, dockerfile: Path, ref: str, args: dict[str, str], log: Path) -> None:
        base = [
            self.buildah, "bud", "--isolation", "chroot", "--pull=never", "--format", "docker",
            "--layers"
        ]
        if _stream(self._build_cmd(base, dockerfile, ref, args), log) != 0:
            raise ImagesError(f"buildah bud of {ref} from {dockerfile} failed (log: {log})")

    def exists(self, ref: str) -> bool:
        return subprocess.run([self.buildah, "inspect", "--type", "image", ref],
                              capture_output=True,
                              check=False).returncode == 0

    def inspect(self, ref: str) -> dict[str, Any]:
        out = subprocess.run([self.buildah, "inspect", "--type", "image", ref],
                             capture_output=True,
                             text=True,
                             check=True).stdout
        return json.loads(out)

    def size(self, ref: str) -> int | None:
        out = subprocess.run([self.buildah, "images", "--json", ref],
                             capture_output=True,
                             text=True,
                             check=False).stdout
        try:
            return parse_size(str(json.loads(out)[0]["size"]))
        except (ValueError, LookupError, TypeError):
            return None

    def run(self, ref: str, argv: Sequence[str], env: dict[str, str],
            mounts: Sequence[tuple[Path, str]], timeout: float) -> Ran:
        ctr = subprocess.run([self.buildah, "from", "--pull=never", ref],
                             capture_output=True,
                             text=True,
                             check=True).stdout.strip().splitlines()[-1]
        cmd = [self.buildah, "run", "--isolation", "chroot"]
        for key, value in env.items():
            cmd += ["--env", f"{key}={value}"]
        for src, dst in mounts:
            cmd += ["-v", f"{src}:{dst}:ro"]
        cmd += [ctr, "--", *argv]
        ran = _launch(cmd, timeout, cleanup=[self.buildah, "rm", ctr])
        # drop buildah's own exit-status lines after the command's
        ran.output = re.sub(r"(\n(subprocess exited with status|Error: exit status) \d+)+\s*$",
                            "\n", ran.output)
        return ran


@dataclasses.dataclass
class Ran:
    returncode: int
    output: str


def _launch(cmd: list[str], timeout: float, cleanup: list[str] | None = None) -> Ran:
    proc = subprocess.Popen(cmd,
                            stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT,
                            text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
        code = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        out, _ = proc.communicate()
        out += f"\n(timed out after {timeout:.0f}s)"
        code = 124
    finally:
        if cleanup:
            subprocess.run(cleanup, capture_output=True, check=False)
    return Ran(code, out)


def choose_engine(kind: str) -> Engine:
    docker = kind in ("auto", "docker") and shutil.which("docker")
    if docker and subprocess.run(["docker", "info"], capture_output=True,
                                 check=False).returncode == 0:
        return Docker()
    if kind == "docker":
        raise ImagesError("--engine docker: `docker info` does not answer (no running engine)")
    return Buildah()


# ---- the stand-in CUDA base (buildah only) ----------------------------------------------------


def cuda_image(dockerfile: Path) -> str:
    """The default of the base Dockerfile's `ARG CUDA_IMAGE` (what its FROM pulls)."""
    match = re.search(r"^ARG\s+CUDA_IMAGE=(\S+)", dockerfile.read_text(encoding="utf-8"), re.M)
    if not match:
        raise ImagesError(f"{dockerfile}: no `ARG CUDA_IMAGE=...` default: expected the CUDA "
                          f"base image name there")
    return match.group(1)


def _fetch(url: str) -> bytes:
    import ssl

    cert = pip_cert()
    context = ssl.create_default_context(cafile=cert) if cert else None
    with urllib.request.urlopen(url, timeout=120, context=context) as response:
        return response.read()


def packages_entry(index: str, package: str) -> dict[str, str]:
    """The stanza of ``package`` in a Debian Packages index, as a dict."""
    for stanza in index.split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in stanza.splitlines() if ": " in line and line[0] != " ")
        if fields.get("Package") == package:
            return fields
    raise ImagesError(f"{package} is not in the {UBUNTU_SUITE} Packages index")


def ubuntu_keyring(workdir: Path) -> Path:
    """The Ubuntu archive keyring, from the ubuntu-keyring .deb whose sha256 matches noble's
    Packages index (Debian does not ship Ubuntu's keys)."""
    index_url = f"{UBUNTU_TLS_MIRROR}/dists/{UBUNTU_SUITE}/main/binary-amd64/Packages.gz"
    index = gzip.decompress(_fetch(index_url)).decode("utf-8", "replace")
    entry = packages_entry(index, "ubuntu-keyring")
    deb = _fetch(f"{UBUNTU_TLS_MIRROR}/{entry['Filename']}")
    digest = hashlib.sha256(deb).hexdigest()
    if digest != entry["SHA256"]:
        raise ImagesError(f"ubuntu-keyring .deb sha256 {digest} does not match the Packages "
                          f"index's {entry['SHA256']} ({index_url})")
    print(f"images: ubuntu-keyring {entry['Version']} sha256 {digest} matches {index_url}")
    (workdir / "ubuntu-keyring.deb").write_bytes(deb)
    _need("dpkg-deb", "dpkg")
    subprocess.run(
        ["dpkg-deb", "-x",
         str(workdir / "ubuntu-keyring.deb"),
         str(workdir / "keyring")],
        check=True)
    # The 2018 archive key (it signs noble) is shipped in trusted.gpg.d, not in
    # usr/share/keyrings/ubuntu-archive-keyring.gpg (2012 keys only): use the directory.
    keyring = workdir / "keyring/etc/apt/trusted.gpg.d"
    if not any(keyring.glob("*archive*.gpg")):
        raise ImagesError(f"ubuntu-keyring .deb has no archive key in {keyring}")
    return keyring


def make_standin(engine: Buildah, name: str, log: Path) -> None:
    """Tag an Ubuntu 24.04 minbase rootfs (mmdebstrap) as ``name``, the CUDA base."""
    mmdebstrap = _need("mmdebstrap", "mmdebstrap")
    with tempfile.TemporaryDirectory(prefix="trainyard-standin-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)  # apt reads the keyring as its unprivileged _apt user
        keyring = ubuntu_keyring(work)
        rootfs = work / "rootfs.tar"
        cmd = [
            mmdebstrap, "--variant=minbase", f"--include={','.join(STANDIN_PACKAGES)}",
            "--components=main,restricted,universe,multiverse", f"--keyring={keyring}",
            f"--customize-hook={STANDIN_USER_HOOK}", UBUNTU_SUITE,
            str(rootfs), UBUNTU_MIRROR
        ]
        if _stream(cmd, log) != 0:
            raise ImagesError(f"mmdebstrap of the {UBUNTU_SUITE} stand-in failed (log: {log})")
        containerfile = work / "Containerfile"
        containerfile.write_text(f"FROM scratch\nADD rootfs.tar /\nLABEL {STANDIN_LABEL}=true\n"
                                 'CMD ["bash"]\n')
        cmd = [
            engine.buildah, "bud", "--isolation", "chroot", "--format", "docker", "-f",
            str(containerfile), "-t", name,
            str(work)
        ]
        if _stream(cmd, log) != 0:
            raise ImagesError(f"building the stand-in {name} failed (log: {log})")


# ---- checks ---------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def compose_services(compose: Path, prefix: str, tag: str) -> dict[str, Any]:
    """Every service of the compose file, all profiles, as `docker-compose config` resolves."""
    tool = shutil.which("docker-compose",
                        path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    if tool is None:
        raise ImagesError("docker-compose (Compose v2) is not installed: run `nox -s images` "
                          "(it installs ci/dev-requirements.txt)")
    env = {**os.environ, "IMAGE_PREFIX": prefix, "TAG": tag}
    proc = subprocess.run(
        [tool, "-f", str(compose), "--profile", "*", "config", "--format", "json"],
        capture_output=True,
        text=True,
        env=env,
        check=False)
    if proc.returncode != 0:
        raise ImagesError(f"docker-compose config of {compose} failed:\n{proc.stderr.strip()}")
    return json.loads(proc.stdout)["services"]


def check_user(engine: Engine, ref: str, result: Result) -> None:
    config = image_config(engine.inspect(ref))
    user = str(config.get("User") or "")
    if is_root_user(user):
        result.fail("non-root", f"final USER is {user or '(unset)'!r}: the image runs as root")
        return
    ran = engine.run(ref, ["id", "-u"], {}, [], 60)
    if ran.returncode != 0 or ran.output.strip().splitlines()[-1:] == ["0"]:
        result.fail("non-root", f"`id -u` in the image gave {ran.output.strip()!r}")
        return
    result.ok("non-root")


HEALTH_SCRIPT = """\
{start} &
server=$!
end=$(( $(date +%s) + {timeout} ))
while [ "$(date +%s)" -lt "$end" ]; do
  if ! kill -0 "$server" 2>/dev/null; then echo "images: the service exited"; exit 3; fi
  if {probe} >/dev/null 2>&1; then
    echo "images: healthy"; kill "$server"; wait "$server"; exit 0
  fi
  sleep 2
done
echo "images: not healthy within {timeout}s; the probe says:"; {probe}
kill "$server"; wait "$server"; exit 1
"""


def health_script(start: Sequence[str], probe: Sequence[str], timeout: int) -> str:
    """A shell script that starts the service, polls the probe, and stops the service.

    Service and probe run in one container, so the container's end stops the service too
    (a service started by a separate `buildah run` can outlive it)."""
    return HEALTH_SCRIPT.format(start=shlex.join(start), probe=shlex.join(probe), timeout=timeout)


def check_health(engine: Engine, ref: str, result: Result, timeout: int = 120) -> None:
    """Start the image's CMD, poll the image's own healthcheck until it passes."""
    config = image_config(engine.inspect(ref))
    probe = healthcheck_argv(config)
    if probe is None:
        return
    # the env-servers CMD and healthcheck read ENV_PORT; tini is not PID 1 under the script
    env = {"ENV_PORT": str(_free_port()), "TINI_SUBREAPER": "1"}
    script = health_script(start_argv(config), probe, timeout)
    ran = engine.run(ref, ["sh", "-c", script], env, [], timeout + 60)
    if ran.returncode == 0:
        print(f"images: {ref} healthcheck passed: {shlex.join(probe)}", flush=True)
        result.ok("healthcheck")
        return
    result.fail(
        "healthcheck",
        f"{shlex.join(probe)} did not pass against `{shlex.join(start_argv(config))}`"
        f" (exit {ran.returncode}):\n{ran.output.strip()[-1500:]}")


def check_services(engine: Engine, image: str, ref: str, services: dict[str, Any], prefix: str,
                   tag: str, result: Result) -> None:
    """Run each smoke of each compose service that uses ``image``."""
    config = image_config(engine.inspect(ref))
    problems = service_problems(services, prefix, tag, {image: start_argv(config)})
    for message in problems.get(image, []):
        check = message.split(": ", 1)[0]
        result.fail(check, message.split(": ", 1)[1])
    mounts = [(ROOT / "configs", "/workspace/configs")]
    for name, service in sorted(services.items()):
        if our_image(str(service.get("image", "")), prefix) != image:
            continue
        check = f"service:{name}"
        entry = SERVICE_SMOKES.get(name)
        if entry is None or result.checks.get(check):
            continue
        if entry.health:
            if "healthcheck" not in result.checks:
                check_health(engine, ref, result)
            health = result.checks.get("healthcheck", "the image declares no HEALTHCHECK")
            if health is None:
                result.ok(check)
            else:
                result.fail(check, f"healthcheck failed: {health}")
            continue
        for smoke in entry.smokes:
            argv = [str(_free_port()) if a == CLOSED_PORT else a for a in smoke.argv]
            print(f"images: {image} {check}: {shlex.join(argv)}", flush=True)
            ran = engine.run(ref, argv, dict(smoke.env), mounts, smoke.timeout)
            failure = smoke_failure(dataclasses.replace(smoke, argv=tuple(argv)), ran.returncode,
                                    ran.output)
            for line in ran.output.strip().splitlines()[-3:]:
                print(f"    {line}", flush=True)
            if failure:
                result.fail(check, failure)
                break
        else:
            result.ok(check)


# ---- main -----------------------------------------------------------------------------------


def _dockerfiles(overrides: Sequence[str]) -> dict[str, Path]:
    files = {name: default_dockerfile(name) for name in IMAGES}
    for item in overrides:
        name, sep, path = item.partition("=")
        if not sep or name not in IMAGES:
            raise ImagesError(f"--dockerfile {item!r}: expected IMAGE=PATH with IMAGE one of "
                              f"{', '.join(IMAGES)}")
        if not Path(path).is_file():
            raise ImagesError(f"--dockerfile {item!r}: {path} is not a file")
        files[name] = Path(path).resolve()
    return files


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only",
                        nargs="+",
                        choices=IMAGES,
                        default=None,
                        metavar="IMAGE",
                        help=f"build and check only these ({', '.join(IMAGES)})")
    parser.add_argument("--dockerfile",
                        action="append",
                        default=[],
                        metavar="IMAGE=PATH",
                        help="build IMAGE from PATH instead of its Dockerfile "
                        "(docker/package.Dockerfile for most package images)")
    parser.add_argument("--engine", choices=["auto", "docker", "buildah"], default="auto")
    parser.add_argument("--skip-build", action="store_true", help="only check existing images")
    parser.add_argument("--compose", type=Path, default=COMPOSE_FILE)
    parser.add_argument("--log", type=Path, default=None, help="build log (default: a temp file)")
    args = parser.parse_args(argv)
    prefix = os.environ.get("IMAGE_PREFIX", "trainyard")
    tag = os.environ.get("TAG", "latest")
    try:
        files = _dockerfiles(args.dockerfile)
        engine = choose_engine(args.engine)
        log = args.log or Path(tempfile.mkstemp(prefix="trainyard-images-", suffix=".log")[1])
        print(f"images: engine {engine.name}, build log {log}", flush=True)
        services = compose_services(args.compose, prefix, tag)
        wanted = args.only or IMAGES
        if isinstance(engine, Buildah) and not args.skip_build:
            standin = cuda_image(files["base"])
            if not engine.exists(standin):
                print(f"images: making the stand-in {standin} (mmdebstrap {UBUNTU_SUITE})")
                make_standin(engine, standin, log)
        results = []
        for name in IMAGES:
            if name not in wanted:
                continue
            # A variant gets its own tag, so checking it never replaces the real image.
            variant = files[name] != default_dockerfile(name)
            ref = image_ref(name, prefix, f"{tag}-variant" if variant else tag)
            result = Result(name)
            results.append(result)
            if not args.skip_build:
                parent = PARENTS.get(name)
                args_ = build_args(name, prefix, tag)
                if parent and not engine.exists(args_["BASE_IMAGE"]):
                    raise ImagesError(f"{name} needs {args_['BASE_IMAGE']}: build it first "
                                      f"(add {parent} to --only)")
                print(f"images: building {ref} from {files[name]} ({args_})", flush=True)
                started = time.monotonic()
                engine.build(files[name], ref, args_, log)
                result.build_s = time.monotonic() - started
            if not engine.exists(ref):
                result.fail("exists", f"{ref} is not built")
                continue
            result.size = engine.size(ref)
            print(f"images: checking {ref}", flush=True)
            check_user(engine, ref, result)
            check_health(engine, ref, result)
            check_services(engine, name, ref, services, prefix, tag, result)
    except ImagesError as exc:
        print(f"images: {exc}", file=sys.stderr)
        return 1
    print()
    print(summary_table(results))
    failures = failure_lines(results)
    for line in failures:
        print(line, file=sys.stderr)
    print(f"images: {len(results)} image(s), {len(failures)} failed check(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
