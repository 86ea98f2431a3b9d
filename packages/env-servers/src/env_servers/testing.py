"""Run a real server for tests and benchmarks: uvicorn in a thread, or ``env-servers serve`` in
a child process (its own interpreter, so client load does not share its GIL)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence

import httpx
import uvicorn
from fastapi import FastAPI

__all__ = [
    "ManualClock", "craft_plan", "free_port", "server_process", "server_thread", "wait_healthy"
]


class ManualClock:
    """A clock that stands still until ``advance``: give it to an ``InstanceManager`` (``app.
    state.manager.clock``) and a "long idle pause" is one call, with no real waiting, while
    the reaper's own loop keeps its real interval."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(url: str, timeout_s: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Return once ``url``/health answers 200; ``TimeoutError`` (or the child's exit) else."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server process exited with status {proc.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"no server answered {url}/health within {timeout_s:g} s")
        time.sleep(0.1)


@contextlib.contextmanager
def server_thread(app: FastAPI, port: int | None = None) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a daemon thread (lifespan included); yields its URL."""
    port = port or free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, name=f"env-server-{port}", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not start on port {port}")
            time.sleep(0.02)
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@contextlib.contextmanager
def server_process(args: Sequence[str] = (), port: int | None = None,
                   timeout_s: float = 60.0) -> Iterator[str]:
    """``env-servers serve ARGS`` in a child process on ``port``; yields its URL, then stops it
    (SIGTERM: uvicorn shuts down, closing every instance)."""
    port = port or free_port()
    cmd = [
        sys.executable, "-m", "env_servers.cli", "serve", "--port",
        str(port), "log_level=warning", *args
    ]
    proc = subprocess.Popen(cmd, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, timeout_s, proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def craft_plan(commands: str, goal: str) -> list[str]:
    """The TextCraft actions (``get``/``craft``) that make ``goal`` from a game's crafting
    commands: each item by its first listed recipe, inputs first, depth first. Tests drive
    games to a win with it."""
    recipes: dict[str, tuple[int, list[tuple[int, str]]]] = {}
    for line in commands.splitlines():
        if not line.startswith("craft "):
            continue
        out, _, ins = line.removeprefix("craft ").partition(" using ")
        count, _, item = out.partition(" ")
        parts = (part.strip().partition(" ") for part in ins.split(","))
        recipes.setdefault(item, (int(count), [(int(c), i) for c, _, i in parts]))
    plan: list[str] = []

    def obtain(item: str, amount: int) -> None:
        if item not in recipes:
            plan.append(f"get {amount} {item}")
            return
        makes, inputs = recipes[item]
        for _ in range(-(-amount // makes)):
            for count, name in inputs:
                obtain(name, count)
            plan.append(f"craft {makes} {item} using " + ", ".join(f"{c} {n}" for c, n in inputs))

    obtain(goal, 1)
    return plan
