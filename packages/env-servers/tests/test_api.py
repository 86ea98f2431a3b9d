"""AgentGym's wire formats, field for field, over real HTTP; and instance management: the cap
(429), idle reaping (404 after the timeout), per-id serialisation with parallel ids."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Iterator
from typing import Any, ClassVar

import httpx
import pytest
from fastapi import FastAPI

from env_servers.app import create_app
from env_servers.envs.base import EnvFamily, StepResult, TextEnv
from env_servers.settings import ServeConfig
from env_servers.testing import ManualClock, craft_plan, server_thread


@pytest.fixture(scope="module")
def babyai() -> Iterator[str]:
    with server_thread(create_app("babyai", ServeConfig(env="babyai"))) as url:
        yield url


@pytest.fixture(scope="module")
def textcraft() -> Iterator[str]:
    with server_thread(create_app("textcraft", ServeConfig(env="textcraft"))) as url:
        yield url


def _post(url: str, path: str, body: dict[str, Any] | None = None) -> Any:
    response = httpx.post(f"{url}{path}", json=body, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def _get(url: str, path: str, **params: Any) -> Any:
    response = httpx.get(f"{url}{path}", params=params, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def _available(observation: str) -> list[str]:
    found = re.search(r"Available actions: \[(.*)\]\s*$", observation)
    assert found, observation
    return re.findall(r'"([^"]+)"', found.group(1))


def test_babyai_cycle_has_agentgym_fields(babyai: str) -> None:
    assert _get(babyai, "/") == "This is environment BabyAI."
    created = _post(babyai, "/create")
    assert set(created) == {"id"} and isinstance(created["id"], int)
    env_id = created["id"]
    # data_idx 1: BabyAI-GoToRedBall-v0 (AgentGym's level 2), seed 0
    reset = _post(babyai, "/reset", {"id": env_id, "data_idx": 1})
    assert set(reset) == {"observation", "reward", "score", "deleted", "done"}
    assert reset["observation"].startswith("Your goal: go to the red ball\n")
    assert (reset["reward"], reset["score"], reset["deleted"], reset["done"]) == (0, 0, False,
                                                                                  False)
    actions = _available(reset["observation"])
    assert actions[:2] == ["turn left", "turn right"] and actions[-1] == "check available actions"
    observed = _get(babyai, "/observation", id=env_id)
    assert set(observed) == {"observation", "reward", "score", "done", "deleted"}
    assert observed["observation"] == reset["observation"]

    turned = _post(babyai, "/step", {"id": env_id, "action": "turn left"})
    assert set(turned) == {"observation", "reward", "score", "done"}
    assert not turned["observation"].startswith("Your goal") and not turned["done"]
    checked = _post(babyai, "/step", {"id": env_id, "action": "check available actions"})
    assert checked["observation"].startswith("You can take the following actions: turn left")
    back = _post(babyai, "/step", {"id": env_id, "action": "Turn Right."})  # case, period: ok
    assert back["observation"] == reset["observation"].split("\n", 1)[1]
    assert "go to red ball 1" in actions

    goal = _post(babyai, "/step", {"id": env_id, "action": "go to red ball 1"})
    assert goal["done"] is True and 0 < goal["reward"] <= 1 and goal["score"] == goal["reward"]
    assert "The task is completed." in goal["observation"]
    after = httpx.post(f"{babyai}/step", json={"id": env_id, "action": "turn left"})
    assert after.status_code == 409 and "reset" in after.json()["detail"]

    again = _post(babyai, "/reset", {"id": env_id, "data_idx": 1})
    assert again == reset  # same task id, same world
    assert _post(babyai, "/close", {"id": env_id}) is True
    gone = httpx.get(f"{babyai}/observation", params={"id": env_id})
    assert gone.status_code == 404 and f"instance {env_id} was closed" in gone.json()["detail"]


def test_textcraft_cycle_has_agentgym_fields(textcraft: str) -> None:
    assert _get(textcraft, "/") == "This is environment TextCraft."
    # AgentGym's TextCraft client sends these three fields to /create
    created = _post(textcraft, "/create", {
        "minecraft_dir": "agentenv_textcraft/",
        "commands": None,
        "goal": None
    })
    assert set(created) == {"id", "observation", "done", "reward"}
    env_id = created["id"]
    assert created["observation"].startswith("Crafting commands:\n") and not created["done"]

    reset = _post(textcraft, "/reset", {"id": env_id, "data_idx": 3})
    assert set(reset) == {"id", "observation", "done", "reward"} and reset["id"] == env_id
    assert reset["observation"].endswith("Goal: craft birch planks.")
    assert _get(textcraft, "/observation", id=env_id) == reset["observation"]
    assert _get(textcraft, "/goal", id=env_id) == "minecraft:birch_planks"
    commands = _get(textcraft, "/commands", id=env_id)
    assert commands in reset["observation"]

    step = _post(textcraft, "/step", {"id": env_id, "action": "inventory"})
    assert set(step) == {"observation", "reward", "done"}
    assert step == {
        "observation": "Inventory: You are not carrying anything.",
        "reward": 0,
        "done": False
    }
    for action in craft_plan(commands, "birch planks"):
        step = _post(textcraft, "/step", {"id": env_id, "action": action})
    assert step == {"observation": "Crafted 4 minecraft:birch_planks", "reward": 1, "done": True}
    detail = _get(textcraft, "/detail", id=env_id)
    assert detail == {
        "observation": step["observation"],
        "done": True,
        "reward": 1,
        "deleted": False
    }
    assert _post(textcraft, "/close", {"id": env_id}) is True
    assert httpx.get(f"{textcraft}/goal", params={"id": env_id}).status_code == 404


def test_textcraft_custom_task_from_create(textcraft: str) -> None:
    commands = "craft 4 oak planks using 1 oak logs"
    created = _post(textcraft, "/create", {"commands": commands, "goal": "minecraft:oak_planks"})
    assert created["observation"] == f"Crafting commands:\n{commands}\n\nGoal: craft oak planks."
    env_id = created["id"]
    _post(textcraft, "/step", {"id": env_id, "action": "get 1 oak logs"})
    done = _post(textcraft, "/step", {"id": env_id, "action": commands})
    assert done["done"] is True and done["reward"] == 1
    _post(textcraft, "/close", {"id": env_id})


def test_textcraft_tasks_are_solvable_over_http(textcraft: str) -> None:
    env_id = _post(textcraft, "/create")["id"]
    for data_idx in (0, 1, 3, 10, 40):
        _post(textcraft, "/reset", {"id": env_id, "data_idx": data_idx})
        goal = _get(textcraft, "/goal", id=env_id).removeprefix("minecraft:").replace("_", " ")
        for action in craft_plan(_get(textcraft, "/commands", id=env_id), goal):
            step = _post(textcraft, "/step", {"id": env_id, "action": action})
        assert step["done"] and step["reward"] == 1, (data_idx, step)
    _post(textcraft, "/close", {"id": env_id})


def test_searchqa_wire_format_uses_env_idx_and_bare_values() -> None:
    app = create_app("searchqa", ServeConfig(env="searchqa"))
    with server_thread(app) as url:
        assert _get(url, "/") == "ok"
        env_idx = _post(url, "/create", {"id": 2})
        assert isinstance(env_idx, int)
        prompt = _get(url, "/observation", env_idx=env_idx)
        assert isinstance(prompt, str) and "Question:" in prompt
        step = _post(url, "/step", {"env_idx": env_idx, "action": "<search> river </search>"})
        assert set(step) == {"observation", "reward", "done", "info"} and step["info"] is None
        assert step["observation"].startswith("<information>")
        assert _post(url, "/reset", {"env_idx": env_idx, "id": 5}) != prompt
        # AgentGym's SearchQA client closes with env_idx, its server read id: both work
        assert _post(url, "/close", {"env_idx": env_idx}) is True
        other = _post(url, "/create", {"id": 0})
        assert _post(url, "/close", {"id": other}) is True


def test_too_many_instances_answers_429_until_one_is_closed() -> None:
    app = create_app("babyai", ServeConfig(env="babyai", max_instances=3))
    with server_thread(app) as url:
        ids = [_post(url, "/create")["id"] for _ in range(3)]
        refused = httpx.post(f"{url}/create")
        assert refused.status_code == 429
        assert "max_instances is 3" in refused.json()["detail"]
        _post(url, "/close", {"id": ids[0]})
        assert _post(url, "/create")["id"] == ids[-1] + 1
        assert _get(url, "/health")["instances"] == 3


def test_idle_instances_are_reaped_and_a_reset_recreates_them() -> None:
    app = create_app("babyai", ServeConfig(env="babyai", idle_timeout_s=0.6))
    with server_thread(app) as url:
        idle = _post(url, "/create")["id"]
        busy = _post(url, "/create")["id"]
        _post(url, "/reset", {"id": busy, "data_idx": 0})
        _post(url, "/reset", {"id": idle, "data_idx": 1})
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:  # keep one instance in use past the timeout
            _post(url, "/step", {"id": busy, "action": "turn left"})
            time.sleep(0.1)
        assert (_get(url, "/health")["instances"], _get(url, "/health")["reaped"]) == (1, 1)
        # a step without a reset: the episode is lost, the 404 says why and what brings it back
        gone = httpx.post(f"{url}/step", json={"id": idle, "action": "turn left"})
        assert gone.status_code == 404
        assert "after 0.6 s without a call" in gone.json()["detail"]
        assert "POST /reset with this id recreates it" in gone.json()["detail"]
        reset = _post(url, "/reset", {"id": idle, "data_idx": 1})  # same id, fresh env
        assert reset["observation"].startswith("Your goal: go to the red ball")
        assert _post(url, "/step", {"id": idle, "action": "turn right"})["done"] is False
        assert _post(url, "/step", {"id": busy, "action": "turn right"})["done"] is False
        health = _get(url, "/health")
        assert (health["instances"], health["reaped"], health["recreated"]) == (2, 1, 1)


def _pause(url: str, clock: ManualClock, seconds: float, reaped: int) -> None:
    """Let ``seconds`` pass on the server's clock and wait for its reaper to notice."""
    clock.advance(seconds)
    deadline = time.monotonic() + 10
    while _get(url, "/health")["reaped"] < reaped:
        assert time.monotonic() < deadline, "the reaper never ran"
        time.sleep(0.05)


def _clocked_app(**settings: Any) -> tuple[FastAPI, ManualClock]:
    # a short timeout makes the reaper look every 0.1 s; the frozen clock decides who is idle
    app = create_app("babyai", ServeConfig(env="babyai", idle_timeout_s=0.4, **settings))
    clock = ManualClock()
    app.state.manager.clock = clock
    return app, clock


def test_a_closed_id_is_not_recreated_and_a_reaped_then_closed_one_neither() -> None:
    app, clock = _clocked_app()
    with server_thread(app) as url:
        closed = _post(url, "/create")["id"]
        reaped = _post(url, "/create")["id"]
        assert _post(url, "/close", {"id": closed}) is True
        _pause(url, clock, 1, reaped=1)
        refused = httpx.post(f"{url}/reset", json={"id": closed, "data_idx": 0})
        assert refused.status_code == 404 and "was closed" in refused.json()["detail"]
        assert "recreates" not in refused.json()["detail"]
        assert _post(url, "/close", {"id": reaped}) is False  # AgentGym: nothing to close
        refused = httpx.post(f"{url}/reset", json={"id": reaped, "data_idx": 0})
        assert refused.status_code == 404 and _get(url, "/health")["recreated"] == 0


def test_recreating_a_reaped_id_respects_max_instances() -> None:
    app, clock = _clocked_app(max_instances=1)
    with server_thread(app) as url:
        reaped = _post(url, "/create")["id"]
        _pause(url, clock, 1, reaped=1)
        holder = _post(url, "/create")["id"]
        full = httpx.post(f"{url}/reset", json={"id": reaped, "data_idx": 0})
        assert full.status_code == 429 and "max_instances is 1" in full.json()["detail"]
        assert _post(url, "/close", {"id": holder}) is True
        assert _post(url, "/reset", {"id": reaped, "data_idx": 0})["done"] is False
        assert _get(url, "/health")["recreated"] == 1


def test_concurrent_resets_of_a_reaped_id_recreate_it_once() -> None:
    app, clock = _clocked_app()

    async def resets(url: str) -> list[int]:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            answers = await asyncio.gather(
                *(client.post("/reset", json={
                    "id": reaped,
                    "data_idx": 2
                }) for _ in range(8)))
        return [a.status_code for a in answers]

    with server_thread(app) as url:
        reaped = _post(url, "/create")["id"]
        _pause(url, clock, 1, reaped=1)
        assert asyncio.run(resets(url)) == [200] * 8
        health = _get(url, "/health")
        assert (health["instances"], health["recreated"]) == (1, 1)


class _SlowEnv(TextEnv):
    """Records how many calls run at once, on this instance and overall."""

    lock = threading.Lock()
    running = 0
    most = 0

    def __init__(self) -> None:
        self.inside = 0
        self.most_inside = 0

    def reset(self, data_idx: int) -> str:
        return "start"

    def step(self, action: str) -> StepResult:
        cls = type(self)
        with cls.lock:
            self.inside += 1
            cls.running += 1
            self.most_inside = max(self.most_inside, self.inside)
            cls.most = max(cls.most, cls.running)
        time.sleep(0.05)  # a blocking call (a JVM, a search)
        with cls.lock:
            self.inside -= 1
            cls.running -= 1
        return StepResult(action, 0.0, False)

    def observation(self) -> str:
        return ""


class _SlowFamily(EnvFamily):
    name: ClassVar[str] = "babyai"  # borrows BabyAI's wire format
    blocking: ClassVar[bool] = True

    def __init__(self) -> None:
        self.made: list[_SlowEnv] = []

    def num_tasks(self) -> int:
        return 1

    def create(self) -> TextEnv:
        self.made.append(_SlowEnv())
        return self.made[-1]


def test_calls_on_one_id_are_serialised_while_ids_run_in_parallel() -> None:
    family = _SlowFamily()
    app = create_app(family, ServeConfig(env="babyai"))

    async def drive(url: str) -> float:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            ids = [(await client.post("/create")).json()["id"] for _ in range(4)]
            for i in ids:
                await client.post("/reset", json={"id": i, "data_idx": 0})
            start = time.perf_counter()
            answers = await asyncio.gather(*(client.post("/step", json={
                "id": i,
                "action": str(k)
            }) for i in ids for k in range(6)))
            assert all(a.status_code == 200 for a in answers)
            return time.perf_counter() - start

    with server_thread(app) as url:
        elapsed = asyncio.run(drive(url))
    assert [env.most_inside for env in family.made] == [1, 1, 1, 1]  # one call per id at a time
    assert _SlowEnv.most >= 2  # different ids overlapped in worker threads
    assert elapsed < 0.8 * 24 * 0.05  # faster than the 24 steps one after another
