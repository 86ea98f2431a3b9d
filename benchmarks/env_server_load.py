"""BabyAI server step throughput and latency with 1, 8, 32 and 64 concurrent clients.

Each client holds one keep-alive connection and one instance, and steps it in a closed loop
("turn left", "move forward", "turn right", "move forward"; a reset when an episode ends, not
counted). Figures per server: requests/s, p50 and p99 step latency, and the server's CPU
(100% = one core). Servers, each in its own process, measured in the same run:

- trainyard: ``env-servers serve --env babyai`` (env calls inline on the event loop);
- trainyard, threads: the same with ``--offload thread`` (why BabyAI runs inline);
- bare anchor: FastAPI + uvicorn doing one minigrid step per request, no instance management,
  no text rendering (the floor the stack allows);
- AgentGym: its own ``agentenv-babyai`` server, when ``--agentgym-python`` names an
  interpreter that has it installed (it needs gym, gymnasium<1 and minigrid<2.5, so it lives
  in a separate venv; see packages/env-servers/README.md).

The load comes from a minimal HTTP/1.1 client written here on asyncio streams: httpx costs
2-4 ms of CPU per request on this machine, more than the servers themselves, and would
measure the client. Run: ``python benchmarks/env_server_load.py [--agentgym-python PY]``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from env_servers.testing import free_port
from trainyard_core.table import print_table

ACTIONS = ("turn left", "move forward", "turn right", "move forward")
CLIENTS = (1, 8, 32, 64)


class Connection:
    """One keep-alive HTTP/1.1 connection that POSTs JSON and reads a Content-Length reply."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self._reader, self._writer = await asyncio.open_connection("127.0.0.1", self.port)

    async def post(self, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        assert self._reader is not None and self._writer is not None
        raw = json.dumps(body or {}).encode()
        self._writer.write(b"POST %s HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json"
                           b"\r\ncontent-length: %d\r\n\r\n%s" % (path.encode(), len(raw), raw))
        head = await self._reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        return int(head[9:12]), json.loads(await self._reader.readexactly(length))

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            await self._writer.wait_closed()


@dataclasses.dataclass
class Level:
    """What one concurrency level measured."""

    latencies: list[float]
    seconds: float
    server_cpu_s: float
    errors: int


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run_level(port: int, pid: int, clients: int, seconds: float, warmup: float) -> Level:
    conns = [Connection(port) for _ in range(clients)]
    ids = []
    for i, conn in enumerate(conns):
        await conn.open()
        _, created = await conn.post("/create")
        ids.append(created["id"])
        await conn.post("/reset", {"id": ids[-1], "data_idx": i})
    latencies: list[float] = []
    errors = 0
    start = time.perf_counter()
    measure_from = start + warmup
    stop = measure_from + seconds
    cpu_at: list[float] = []

    async def client(i: int) -> None:
        nonlocal errors
        conn, k, episode = conns[i], 0, 0
        while (now := time.perf_counter()) < stop:
            if now >= measure_from and not cpu_at:
                cpu_at.append(_cpu_s(pid))
            status, answer = await conn.post("/step", {"id": ids[i], "action": ACTIONS[k % 4]})
            took = time.perf_counter() - now
            k += 1
            if now >= measure_from:
                latencies.append(took)
            if status != 200:
                errors += 1
            if status != 200 or answer.get("done") or "error" in answer:
                episode += 1  # AgentGym answers a finished episode with 200 {"error": ...}
                await conn.post("/reset", {"id": ids[i], "data_idx": i + 40 * episode})

    await asyncio.gather(*(client(i) for i in range(clients)))
    cpu = _cpu_s(pid) - (cpu_at[0] if cpu_at else _cpu_s(pid))
    for i, conn in enumerate(conns):
        try:
            await conn.post("/close", {"id": ids[i]})
        except (asyncio.IncompleteReadError, ConnectionError):
            # uvicorn drops keep-alive connections idle for 5 s, which the last of 64
            # sequential closes on a slow server can be: reconnect once.
            await conn.open()
            await conn.post("/close", {"id": ids[i]})
        await conn.close()
    return Level(latencies, seconds, cpu, errors)


def _wait(port: int, proc: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s

    async def probe() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    while True:
        try:
            asyncio.run(probe())
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server on port {port} did not start") from None
            time.sleep(0.2)


def measure(name: str, cmd: Sequence[str], port: int, seconds: float, warmup: float,
            clients: Sequence[int]) -> list[dict[str, Any]]:
    proc = subprocess.Popen(list(cmd), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rows = []
    try:
        _wait(port, proc)
        for n in clients:
            level = asyncio.run(run_level(port, proc.pid, n, seconds, warmup))
            lat = sorted(level.latencies)
            rows.append({
                "server": name,
                "clients": n,
                "requests/s": len(lat) / level.seconds,
                "p50 ms": 1e3 * lat[len(lat) // 2],
                "p99 ms": 1e3 * lat[min(len(lat) - 1, int(0.99 * len(lat)))],
                "server CPU %": 100 * level.server_cpu_s / level.seconds,
                "errors": level.errors,
            })
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    return rows


class BareStep(BaseModel):
    id: int
    action: str


class BareReset(BaseModel):
    id: int
    data_idx: int


def serve_bare(port: int) -> None:
    """The anchor: one minigrid step per request behind FastAPI, nothing else."""
    import gymnasium as gym
    import uvicorn
    from fastapi import FastAPI

    from env_servers.envs.babyai import LEVELS

    primitive = {"turn left": 0, "turn right": 1, "move forward": 2}
    envs: dict[int, Any] = {}
    app = FastAPI()

    @app.get("/")
    async def hello() -> str:
        return "bare minigrid"

    @app.post("/create")
    async def create() -> dict[str, int]:
        envs[len(envs)] = None
        return {"id": len(envs) - 1}

    @app.post("/reset")
    async def reset(body: BareReset) -> dict[str, Any]:
        env: Any = gym.make(LEVELS[body.data_idx % 40], disable_env_checker=True).unwrapped
        env.reset(seed=body.data_idx // 40)
        envs[body.id] = env
        return {"observation": env.mission, "reward": 0.0, "score": 0.0, "done": False}

    @app.post("/step")
    async def step(body: BareStep) -> dict[str, Any]:
        env = envs[body.id]
        _, reward, terminated, truncated, _ = env.step(primitive.get(body.action, 0))
        return {
            "observation": env.mission,
            "reward": float(reward),
            "score": float(reward),
            "done": bool(terminated or truncated)
        }

    @app.post("/close")
    async def close() -> bool:
        return True

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per level")
    parser.add_argument("--warmup", type=float, default=0.5, help="unmeasured seconds first")
    parser.add_argument("--clients", type=int, nargs="+", default=list(CLIENTS))
    parser.add_argument("--agentgym-python",
                        default=os.environ.get("AGENTGYM_PYTHON"),
                        help="interpreter with AgentGym's agentenv-babyai installed")
    parser.add_argument("--no-threads", action="store_true", help="skip the --offload thread run")
    parser.add_argument("--serve-bare", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_bare:
        serve_bare(args.serve_bare)
        return 0
    servers: list[tuple[str, list[str], int]] = []

    def ours(name: str, *extra: str) -> None:
        port = free_port()
        servers.append((name, [
            sys.executable, "-m", "env_servers.cli", "serve", "--env", "babyai", "--port",
            str(port), "log_level=warning", *extra
        ], port))

    ours("trainyard")
    if not args.no_threads:
        ours("trainyard, threads", "--offload", "thread")
    port = free_port()
    servers.append(("bare anchor", [sys.executable, __file__, "--serve-bare", str(port)], port))
    if args.agentgym_python:
        port = free_port()
        servers.append(("AgentGym", [
            args.agentgym_python, "-m", "uvicorn", "agentenv_babyai:app", "--host", "127.0.0.1",
            "--port",
            str(port), "--log-level", "warning", "--no-access-log"
        ], port))
    else:
        print("AgentGym's server: not measured (pass --agentgym-python or AGENTGYM_PYTHON)")
    print(f"{os.cpu_count()} cores; load average before: {os.getloadavg()[0]:.2f}")
    rows = []
    for name, cmd, port in servers:
        rows += measure(name, cmd, port, args.seconds, args.warmup, args.clients)
    print_table("BabyAI /step under concurrent clients (one process per server)", rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
