"""Start, watch and stop CARLA servers: in Docker (``carlasim/carla:0.9.16``) or locally.

Each server is known by its RPC port; the streaming port is the next one, so servers for
parallel training sit ``PORT_STRIDE`` ports apart. Local servers keep a pid file and a log in
``state_dir``; Docker servers are containers named ``trainyard-carla-<port>``. Health is an
RPC call (the server's version), not a port probe: a server that accepts connections but
has not loaded its world is not healthy (a closed port only short-cuts the "not yet" answer).

A local server is its whole process group: ``CarlaUE4.sh`` runs the engine binary as a child,
so signalling the script alone would orphan the engine. Each server starts in a session of
its own, is stopped with ``killpg`` and counts as running while any process of its group
lives. A start that fails (timeout, exit, Ctrl-C) stops every server that start launched and
removes their pid files, so nothing is left running and ``status`` stays true.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import shlex
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from carla_env.carla_client import CarlaConnectionError, server_version
from carla_env.envs import PORT_STRIDE
from trainyard_core.io import atomic_write_text

__all__ = ["CARLA_IMAGE", "QUALITIES", "ServerConfig", "ServerManager", "ServerStatus"]

CARLA_IMAGE = "carlasim/carla:0.9.16"
# The seed manager's levels: CARLA's quality enum (EQualityLevel) has all four, though its
# docs only show Low and Epic.
QUALITIES = ("Low", "Medium", "High", "Epic")
MODES = ("docker", "local")


@dataclasses.dataclass
class ServerConfig:
    """How to run CARLA servers (the ``carla-server`` flags)."""

    mode: str = dataclasses.field(default="docker", metadata={"help": "docker or local"})
    port: int = dataclasses.field(default=2000, metadata={"help": "RPC port of the first server"})
    count: int = dataclasses.field(default=1,
                                   metadata={"help": f"servers, {PORT_STRIDE} ports apart"})
    headless: bool = dataclasses.field(default=True,
                                       metadata={"help": "render off-screen (-RenderOffScreen)"})
    quality: str = dataclasses.field(
        default="Low",
        metadata={
            "help": "-quality-level: Low, Medium, High or Epic (any case; Low trains fastest)"
        })
    resolution: str = dataclasses.field(default="1280x720",
                                        metadata={"help": "window size WxH when not headless"})
    carla_root: str | None = dataclasses.field(
        default=None, metadata={"help": "local mode: folder of CarlaUE4.sh (else $CARLA_ROOT)"})
    image: str = CARLA_IMAGE
    gpu: str = dataclasses.field(default="all", metadata={"help": "docker --gpus value"})
    host: str = "127.0.0.1"
    timeout: float = dataclasses.field(
        default=120.0,
        metadata={"help": "seconds start waits for RPC; a server still silent then is stopped"})
    state_dir: str = dataclasses.field(default="~/.cache/trainyard/carla",
                                       metadata={"help": "local mode: pid files and logs"})

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        quality = {q.lower(): q for q in QUALITIES}.get(str(self.quality).lower())
        if quality is None:
            raise ValueError(f"quality must be one of {', '.join(QUALITIES)} (any case), "
                             f"got {self.quality!r}")
        self.quality = quality  # canonical spelling, as CARLA's enum writes it
        if not 0 < self.port < 65536 - PORT_STRIDE * self.count:
            raise ValueError(f"port {self.port} leaves no room for {self.count} server(s)")
        if self.count < 1:
            raise ValueError(f"count must be >= 1, got {self.count}")
        width, _, height = self.resolution.partition("x")
        if not (width.isdigit() and height.isdigit()):
            raise ValueError(f"resolution must be WxH, e.g. 1280x720, got {self.resolution!r}")
        if not self.timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds, got {self.timeout!r}")

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

    # Longest single RPC probe: a busy server that answers slower than this is "not yet".
    PROBE_TIMEOUT = 5.0
    POLL_INTERVAL = 0.5

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
        """Start every configured server; with ``wait``, block until each answers RPC.

        All servers share one deadline (``timeout`` seconds from now): they boot in parallel.
        If any fails to come up, every server this call launched is stopped (process group
        or container) and forgotten before the error propagates, with a message saying so.
        """
        deadline = time.monotonic() + self.cfg.timeout
        launched: list[int] = []
        try:
            for port in self.cfg.ports:
                if self._running(port):
                    continue
                if self.cfg.mode == "docker":
                    self._docker(self.docker_run_command(port))
                else:
                    self._start_local(port)
                launched.append(port)
            if not wait:
                return [self.status(p) for p in self.cfg.ports]
            return [self.wait_healthy(p, deadline) for p in self.cfg.ports]
        except (RuntimeError, TimeoutError) as exc:
            if not launched:
                raise
            left = self._stop_ports(launched)
            ports = ", ".join(map(str, launched))
            outcome = (f"processes still alive on port(s) {', '.join(map(str, left))}"
                       if left else "nothing left running")
            raise type(exc)(f"{exc}; stopped what this start launched (port(s) {ports}): "
                            f"{outcome}") from exc
        except BaseException:
            # Ctrl-C or a bug mid-start: leave no half-started server behind either.
            self._stop_ports(launched)
            raise

    def _start_local(self, port: int) -> None:
        command = self.local_command(port)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with self.log_file(port).open("ab") as log:
            log.write(f"# carla-server {time.strftime('%Y-%m-%d %H:%M:%S')}: "
                      f"{shlex.join(command)}\n".encode())
            log.flush()
            # A new session makes the server its own process group (pgid == pid), so
            # stop() reaches the engine CarlaUE4.sh runs as a child.
            proc = subprocess.Popen(command,
                                    stdout=log,
                                    stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        self._children[port] = proc
        # "pid start-time": a pid file left by a dead server never matches a reused pid.
        start_time = _start_time(proc.pid) or ""
        atomic_write_text(self._pid_file(port), f"{proc.pid} {start_time}".strip() + "\n")

    def wait_healthy(self, port: int, deadline: float | None = None) -> ServerStatus:
        """Block until the server on ``port`` answers RPC; raise if it exits or runs late."""
        if deadline is None:
            deadline = time.monotonic() + self.cfg.timeout
        while True:
            left = deadline - time.monotonic()
            status = self.status(port, probe_timeout=max(0.1, min(self.PROBE_TIMEOUT, left)))
            if status.healthy:
                return status
            if not status.running:
                raise RuntimeError(f"the CARLA server on port {port} exited while starting; "
                                   f"see `{self._logs_command(port)}`")
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"the CARLA server on port {port} did not answer RPC within "
                                   f"{self.cfg.timeout:g} s (see `{self._logs_command(port)}`)")
            time.sleep(min(self.POLL_INTERVAL, left))

    def _logs_command(self, port: int) -> str:
        """The `carla-server logs` line that finds this server's log (local mode needs its
        mode and state directory named)."""
        if self.cfg.mode != "local":
            return f"carla-server logs --port {port}"
        return (f"carla-server logs --mode local --state-dir {self.cfg.state_dir} "
                f"--port {port}")

    def status(self, port: int, probe_timeout: float | None = None) -> ServerStatus:
        running = self._running(port)
        if not running:
            return ServerStatus(port, False, False, "stopped")
        if not _port_open(self.cfg.host, port):
            return ServerStatus(port, True, False, "running, RPC port not open yet")
        try:
            _, version = server_version(self.cfg.host,
                                        port,
                                        timeout=probe_timeout or self.PROBE_TIMEOUT)
        except CarlaConnectionError:
            return ServerStatus(port, True, False, "running, not answering RPC yet")
        return ServerStatus(port, True, True, f"healthy, CARLA {version}")

    def _running(self, port: int) -> bool:
        if self.cfg.mode == "docker":
            out = self._docker(
                ["docker", "ps", "--quiet", "--filter", f"name=^{self.container(port)}$"],
                check=False)
            return bool(out.strip())
        pgid = self._pid(port)
        return pgid is not None and bool(_group_members(pgid))

    def _pid(self, port: int) -> int | None:
        """The server's pid (= its process group), or None if no live server owns the file."""
        try:
            words = self._pid_file(port).read_text().split()
            pid = int(words[0])
        except (FileNotFoundError, IndexError, ValueError):
            return None
        recorded = words[1] if len(words) > 1 else None
        current = _start_time(pid)
        if recorded is not None and current is not None and current != recorded:
            return None  # that pid now belongs to another process
        return pid

    def stop(self, sig: int = signal.SIGTERM, grace: float = 20.0) -> None:
        """Stop every configured server (``kill`` uses SIGKILL at once)."""
        self._stop_ports(self.cfg.ports, sig, grace)

    def _stop_ports(self,
                    ports: list[int],
                    sig: int = signal.SIGTERM,
                    grace: float = 20.0) -> list[int]:
        """Signal each server's whole process group; SIGKILL what outlives ``grace``.

        Returns the ports whose group still has live processes after SIGKILL (a process
        stuck in the kernel), so callers never claim a clean stop that did not happen.
        """
        survivors = []
        for port in ports:
            if self.cfg.mode == "docker":
                verb = "kill" if sig == signal.SIGKILL else "stop"
                self._docker(["docker", verb, self.container(port)], check=False)
                continue
            pgid = self._pid(port)
            if pgid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pgid, sig)
                if not _wait_group_gone(pgid, grace, functools.partial(self._reap, port)):
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(pgid, signal.SIGKILL)
                    if not _wait_group_gone(pgid, 5.0, functools.partial(self._reap, port)):
                        survivors.append(port)
                        continue  # keep the pid file: status must still show it running
            self._reap(port, block=True)
            self._pid_file(port).unlink(missing_ok=True)
        return survivors

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


# ------------------------------------------------------------------ processes
def _proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (state first), or None if gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (with the pid, an identity)."""
    fields = _proc_stat(pid)
    return fields[19] if fields else None


def _group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes in process group ``pgid``."""
    if not Path("/proc/self/stat").exists():  # no procfs: ask the kernel about the group
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return []
        return [pgid]
    members = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            fields = _proc_stat(int(entry.name))
            if fields and fields[0] != "Z" and int(fields[2]) == pgid:
                members.append(int(entry.name))
    return members


def _wait_group_gone(pgid: int, seconds: float, reap: Callable[[], None]) -> bool:
    """Poll until process group ``pgid`` has no live process (``reap`` collects zombies)."""
    deadline = time.monotonic() + seconds
    while _group_members(pgid):
        if time.monotonic() >= deadline:
            return False
        reap()
        time.sleep(0.05)
    return True


def _port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether anything accepts TCP connections on ``host:port`` (a cheap "not yet" test)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
