"""Start, watch and stop CARLA servers: in Docker (``carlasim/carla:0.9.16``) or locally.

Each server is known by its RPC port; the streaming port is the next one, so servers for
parallel training sit ``PORT_STRIDE`` ports apart. Local servers keep a pid file and a log in
``state_dir``; Docker servers are containers named ``trainyard-carla-<port>``. Health is an
RPC call (the server's version), not a port probe: a server that accepts connections but
has not loaded its world is not healthy.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from carla_env.carla_client import CarlaConnectionError, server_version
from carla_env.envs import PORT_STRIDE

__all__ = ["CARLA_IMAGE", "QUALITIES", "ServerConfig", "ServerManager", "ServerStatus"]

CARLA_IMAGE = "carlasim/carla:0.9.16"
QUALITIES = ("Low", "Epic")
MODES = ("docker", "local")


@dataclasses.dataclass
class ServerConfig:
    """How to run CARLA servers (the ``carla-server`` flags)."""

    mode: str = dataclasses.field(default="docker", metadata={"help": "docker or local"})
    port: int = dataclasses.field(default=2000, metadata={"help": "RPC port of the first server"})
    count: int = dataclasses.field(default=1, metadata={"help": "servers, PORT_STRIDE apart"})
    headless: bool = dataclasses.field(default=True,
                                       metadata={"help": "render off-screen (-RenderOffScreen)"})
    quality: str = dataclasses.field(default="Low", metadata={"help": "Low or Epic"})
    resolution: str = dataclasses.field(default="1280x720",
                                        metadata={"help": "window size WxH when not headless"})
    carla_root: str | None = dataclasses.field(
        default=None, metadata={"help": "local mode: folder of CarlaUE4.sh (else $CARLA_ROOT)"})
    image: str = CARLA_IMAGE
    gpu: str = dataclasses.field(default="all", metadata={"help": "docker --gpus value"})
    host: str = "127.0.0.1"
    timeout: float = dataclasses.field(default=120.0,
                                       metadata={"help": "seconds to wait for a healthy server"})
    state_dir: str = dataclasses.field(default="~/.cache/trainyard/carla",
                                       metadata={"help": "local mode: pid files and logs"})

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.quality not in QUALITIES:
            raise ValueError(f"quality must be one of {', '.join(QUALITIES)}, got {self.quality!r}")
        if not 0 < self.port < 65536 - PORT_STRIDE * self.count:
            raise ValueError(f"port {self.port} leaves no room for {self.count} server(s)")
        if self.count < 1:
            raise ValueError(f"count must be >= 1, got {self.count}")
        width, _, height = self.resolution.partition("x")
        if not (width.isdigit() and height.isdigit()):
            raise ValueError(f"resolution must be WxH, e.g. 1280x720, got {self.resolution!r}")

    @property
    def ports(self) -> list[int]:
        return [self.port + PORT_STRIDE * i for i in range(self.count)]


@dataclasses.dataclass(frozen=True)
class ServerStatus:
    port: int
    running: bool  # the process or container exists
    healthy: bool  # it answered an RPC
    detail: str


def server_args(cfg: ServerConfig, port: int) -> list[str]:
    """CarlaUE4.sh arguments for a server on ``port``."""
    args = [
        f"-carla-rpc-port={port}", f"-carla-streaming-port={port + 1}",
        f"-quality-level={cfg.quality}", "-nosound"
    ]
    if cfg.headless:
        args.insert(0, "-RenderOffScreen")
    else:
        width, height = cfg.resolution.split("x")
        args += ["-windowed", f"-ResX={width}", f"-ResY={height}"]
    return args


class ServerManager:
    """Python API behind ``carla-server``."""

    def __init__(self, cfg: ServerConfig) -> None:
        self.cfg = cfg
        self.state_dir = Path(os.path.expanduser(cfg.state_dir))
        self._children: dict[int, subprocess.Popen] = {}  # servers this process started

    # ------------------------------------------------------------ commands
    def docker_run_command(self, port: int) -> list[str]:
        return [
            "docker", "run", "--detach", "--rm", "--name",
            self.container(port), "--gpus", self.cfg.gpu, "--publish",
            f"{port}-{port + 1}:{port}-{port + 1}", self.cfg.image, "bash", "./CarlaUE4.sh",
            *server_args(self.cfg, port)
        ]

    def local_command(self, port: int) -> list[str]:
        root = self.cfg.carla_root or os.environ.get("CARLA_ROOT")
        if not root:
            raise FileNotFoundError("local mode needs --carla-root or $CARLA_ROOT (the folder "
                                    "holding CarlaUE4.sh)")
        script = Path(root).expanduser() / "CarlaUE4.sh"
        if not script.is_file():
            raise FileNotFoundError(f"{script} does not exist (is --carla-root a CARLA 0.9.16 "
                                    "installation?)")
        return [str(script), *server_args(self.cfg, port)]

    @staticmethod
    def container(port: int) -> str:
        return f"trainyard-carla-{port}"

    def _pid_file(self, port: int) -> Path:
        return self.state_dir / f"carla-{port}.pid"

    def log_file(self, port: int) -> Path:
        return self.state_dir / f"carla-{port}.log"

    # ------------------------------------------------------------- actions
    def start(self, wait: bool = True) -> list[ServerStatus]:
        """Start every configured server; with ``wait``, block until each answers RPC."""
        for port in self.cfg.ports:
            if self.status(port).running:
                continue
            if self.cfg.mode == "docker":
                self._docker(self.docker_run_command(port))
            else:
                self._start_local(port)
        if not wait:
            return [self.status(p) for p in self.cfg.ports]
        return [self.wait_healthy(p) for p in self.cfg.ports]

    def _start_local(self, port: int) -> None:
        command = self.local_command(port)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with self.log_file(port).open("ab") as log:
            proc = subprocess.Popen(command,
                                    stdout=log,
                                    stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        self._pid_file(port).write_text(str(proc.pid))
        self._children[port] = proc

    def wait_healthy(self, port: int) -> ServerStatus:
        deadline = time.monotonic() + self.cfg.timeout
        while True:
            status = self.status(port)
            if status.healthy:
                return status
            if not status.running:
                raise RuntimeError(f"the CARLA server on port {port} exited while starting; "
                                   f"see `carla-server logs --port {port}`")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the CARLA server on port {port} did not answer RPC within "
                                   f"{self.cfg.timeout:g} s; see `carla-server logs --port {port}`")
            time.sleep(2.0)

    def status(self, port: int) -> ServerStatus:
        running = self._running(port)
        if not running:
            return ServerStatus(port, False, False, "stopped")
        try:
            _, version = server_version(self.cfg.host, port, timeout=5.0)
        except CarlaConnectionError:
            return ServerStatus(port, True, False, "running, not answering RPC yet")
        return ServerStatus(port, True, True, f"healthy, CARLA {version}")

    def _running(self, port: int) -> bool:
        if self.cfg.mode == "docker":
            out = self._docker(
                ["docker", "ps", "--quiet", "--filter", f"name=^{self.container(port)}$"],
                check=False)
            return bool(out.strip())
        pid = self._pid(port)
        if pid is None:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        # A zombie (exited, not yet reaped) does not count as running.
        stat = Path(f"/proc/{pid}/stat")
        return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")

    def _pid(self, port: int) -> int | None:
        try:
            return int(self._pid_file(port).read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def stop(self, sig: int = signal.SIGTERM, grace: float = 20.0) -> None:
        """Stop every configured server (``kill`` uses SIGKILL at once)."""
        for port in self.cfg.ports:
            if self.cfg.mode == "docker":
                verb = "kill" if sig == signal.SIGKILL else "stop"
                self._docker(["docker", verb, self.container(port)], check=False)
                continue
            pid = self._pid(port)
            if pid is None:
                continue
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, sig)
            deadline = time.monotonic() + grace
            while self._running(port) and time.monotonic() < deadline:
                self._reap(port)
                time.sleep(0.2)
            if self._running(port):
                os.killpg(pid, signal.SIGKILL)
            self._reap(port, block=True)
            self._pid_file(port).unlink(missing_ok=True)

    def _reap(self, port: int, block: bool = False) -> None:
        """Collect the exit status of a server this process started (no zombie left)."""
        child = self._children.get(port)
        if child is not None and (child.poll() is not None or block):
            child.wait(timeout=30)
            del self._children[port]

    def kill(self) -> None:
        self.stop(sig=signal.SIGKILL)

    def restart(self) -> list[ServerStatus]:
        self.stop()
        return self.start(wait=True)

    def logs(self, port: int, lines: int = 100) -> str:
        if self.cfg.mode == "docker":
            return self._docker(
                ["docker", "logs", "--tail",
                 str(lines), self.container(port)], check=False)
        path = self.log_file(port)
        if not path.exists():
            return f"no log at {path}"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    # -------------------------------------------------------------- docker
    @staticmethod
    def _docker(command: list[str], check: bool = True) -> str:
        if shutil.which("docker") is None:
            raise RuntimeError("docker mode needs the docker CLI; install Docker or use "
                               "--mode local --carla-root PATH")
        proc = subprocess.run(command, capture_output=True, text=True, check=False)
        if proc.returncode != 0 and ("Cannot connect to the Docker daemon" in proc.stderr or
                                     "docker daemon" in proc.stderr.lower()):
            raise RuntimeError("no Docker engine is running (start Docker, or use --mode local)")
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(command[:3])} failed: {proc.stderr.strip()}")
        return proc.stdout
