"""Load: 64 concurrent clients x 200 steps across a BabyAI and a TextCraft server process.

Every client plays its own deterministic trajectory (its actions are a function of its own
observations) and the test replays each one in this process, alone, on a fresh environment:
any state mixed between instances, lost update or reordered call would change some client's
observations. Also: zero 5xx, every answer well-formed, no instance left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Callable
from typing import Any

import httpx

from env_servers.envs.babyai import BabyAIFamily
from env_servers.envs.base import EnvFamily
from env_servers.envs.textcraft import TextCraftFamily
from env_servers.testing import server_process

CLIENTS_PER_FAMILY = 32
STEPS = 200
FIELDS = {
    "babyai": {
        "observation": str,
        "reward": float,
        "score": float,
        "done": bool
    },
    "textcraft": {
        "observation": str,
        "reward": float,
        "done": bool
    },
}
RESET_FIELDS = {
    "babyai": {
        "observation": str,
        "reward": float,
        "score": float,
        "deleted": bool,
        "done": bool
    },
    "textcraft": {
        "id": int,
        "observation": str,
        "reward": float,
        "done": bool
    },
}

Record = tuple[str, str, float, bool]  # (action or "reset N", observation, reward, done)


def _pick(options: list[str], client: int, k: int) -> str:
    return options[(client * 7919 + k * 104729 + k * k) % len(options)]


def babyai_policy(client: int, k: int, observation: str, first: str) -> str:
    found = re.search(r"Available actions: \[(.*)\]\s*$", observation)
    assert found, observation
    return _pick(re.findall(r'"([^"]+)"', found.group(1)), client, k)


def textcraft_policy(client: int, k: int, observation: str, first: str) -> str:
    recipes = [line for line in first.splitlines() if line.startswith("craft ")]
    bases = sorted({
        part.strip().split(" ", 1)[1]
        for line in recipes
        for part in line.split(" using ", 1)[1].split(",")
    })
    return _pick(["inventory", *(f"get 1 {b}" for b in bases), *recipes], client, k)


POLICIES: dict[str, Callable[[int, int, str, str], str]] = {
    "babyai": babyai_policy,
    "textcraft": textcraft_policy,
}


def task_of(family: str, client: int, episode: int) -> int:
    if family == "babyai":  # walk through the 40 levels, seeds by client
        return (client + 7 * episode) % 40 + 40 * client
    return (client * 17 + 5 * episode) % 544


def _check(payload: Any, fields: dict[str, type]) -> None:
    assert isinstance(payload, dict) and set(payload) == set(fields), payload
    for key, kind in fields.items():
        value = payload[key]
        ok = isinstance(value, int | float) and not isinstance(value, bool) \
            if kind is float else isinstance(value, kind)
        assert ok, (key, value)


async def play(client: httpx.AsyncClient, family: str, index: int,
               statuses: list[int]) -> list[Record]:
    """One client's 200 steps over HTTP, resetting to its next task when an episode ends."""

    async def call(method: str, path: str, **kwargs: Any) -> Any:
        response = await client.request(method, path, **kwargs)
        statuses.append(response.status_code)
        assert response.status_code == 200, (path, response.status_code, response.text)
        return response.json()

    created = await call("POST", "/create")
    env_id = created["id"]
    records: list[Record] = []
    episode, observation, first = 0, "", ""
    done = True
    for k in range(STEPS):
        if done:
            data_idx = task_of(family, index, episode)
            reset = await call("POST", "/reset", json={"id": env_id, "data_idx": data_idx})
            _check(reset, RESET_FIELDS[family])
            observation = first = reset["observation"]
            records.append((f"reset {data_idx}", observation, reset["reward"], reset["done"]))
            episode += 1
        action = POLICIES[family](index, k, observation, first)
        answer = await call("POST", "/step", json={"id": env_id, "action": action})
        _check(answer, FIELDS[family])
        observation, done = answer["observation"], answer["done"]
        records.append((action, observation, answer["reward"], done))
    assert await call("POST", "/close", json={"id": env_id}) is True
    return records


def replay(env_family: EnvFamily, family: str, index: int) -> list[Record]:
    """The same client, alone, in this process: what its records must equal."""
    env = env_family.create()
    records: list[Record] = []
    episode, observation, first = 0, "", ""
    done = True
    for k in range(STEPS):
        if done:
            data_idx = task_of(family, index, episode)
            observation = first = env.reset(data_idx)
            records.append((f"reset {data_idx}", observation, 0.0, False))
            episode += 1
        action = POLICIES[family](index, k, observation, first)
        result = env.step(action)
        observation, done = result.observation, result.done
        records.append((action, observation, result.reward, done))
    env.close()
    return records


async def load(urls: dict[str, str]) -> tuple[dict[str, list[list[Record]]], list[int], float]:
    statuses: list[int] = []
    async with contextlib.AsyncExitStack() as stack:
        # one AsyncClient (one keep-alive connection) per simulated client: a single shared
        # pool of 64 connections costs httpx ~2x the CPU per request here
        clients = {
            name: [
                await stack.enter_async_context(httpx.AsyncClient(base_url=url, timeout=120))
                for _ in range(CLIENTS_PER_FAMILY)
            ] for name, url in urls.items()
        }
        start = time.perf_counter()
        results = await asyncio.gather(*(play(clients[name][i], name, i, statuses)
                                         for name in urls
                                         for i in range(CLIENTS_PER_FAMILY)))
        elapsed = time.perf_counter() - start
        for name in urls:
            health = (await clients[name][0].get("/health")).json()
            assert health["instances"] == 0, health  # every client closed its instance
    by_family = {
        name: list(results[n * CLIENTS_PER_FAMILY:(n + 1) * CLIENTS_PER_FAMILY])
        for n, name in enumerate(urls)
    }
    return by_family, statuses, elapsed


def test_64_clients_200_steps_no_mixing_no_5xx() -> None:
    with server_process(["--env", "babyai"]) as babyai, \
            server_process(["--env", "textcraft"]) as textcraft:
        records, statuses, elapsed = asyncio.run(load({"babyai": babyai, "textcraft": textcraft}))
    steps = 2 * CLIENTS_PER_FAMILY * STEPS
    print(f"\n{steps} steps by {2 * CLIENTS_PER_FAMILY} clients in {elapsed:.1f} s "
          f"({len(statuses) / elapsed:.0f} requests/s)")
    assert not [s for s in statuses if s >= 500]
    assert set(statuses) == {200}
    families: dict[str, EnvFamily] = {"babyai": BabyAIFamily(), "textcraft": TextCraftFamily()}
    for name, per_client in records.items():
        assert len(per_client) == CLIENTS_PER_FAMILY
        episodes = 0
        for index, got in enumerate(per_client):
            expected = replay(families[name], name, index)
            assert len([r for r in got if not r[0].startswith("reset")]) == STEPS
            assert got == expected, (name, index)
            episodes += sum(r[0].startswith("reset") for r in got)
        assert episodes > CLIENTS_PER_FAMILY  # episodes ended and restarted along the way
