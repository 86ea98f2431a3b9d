"""EnvClient / AsyncEnvClient: each family's wire format, errors, and which calls are retried.

The server here is a test double defined in this file that speaks AgentGym's wire formats over
real HTTP (uvicorn on a free port); it checks what the client sends and answers the way the
families do. The real servers are exercised end to end in test_eval.py.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import torch
import uvicorn
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

from env_servers.client import AsyncEnvClient, EnvClient, EnvServerError

torch.set_num_threads(1)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Body(BaseModel):
    id: int | None = None
    env_idx: int | None = None
    data_idx: int | None = None
    action: str | None = None


def double_app(family: str) -> tuple[FastAPI, collections.Counter[str]]:
    """A family's wire format: ``id`` keys and objects, or SearchQA's ``env_idx`` and bare
    values. Action "bad" is refused with 422, "agentgym-error" answered AgentGym's way."""
    app = FastAPI()
    hits: collections.Counter[str] = collections.Counter()
    live: dict[int, int] = {}
    ids = itertools.count(100, 7)  # unique, and unlike list positions
    key = "env_idx" if family == "searchqa" else "id"

    def instance(idx: int | None) -> int:
        if idx is None or idx not in live:
            raise HTTPException(404, f"unknown instance id {idx}")
        return idx

    @app.get("/health")
    def health() -> dict[str, Any]:
        hits["health"] += 1
        return {"status": "ok", "env": family}

    @app.post("/create")
    def create(body: _Body | None = None) -> Any:
        hits["create"] += 1
        if family == "searchqa":
            assert body is not None and body.id == 0
        idx = next(ids)
        live[idx] = -1
        return idx if family == "searchqa" else {"id": idx}

    @app.post("/reset")
    def reset(body: _Body) -> Any:
        hits["reset"] += 1
        if family == "searchqa":
            live[instance(body.env_idx)] = body.id or 0
            return f"Question {body.id}?"
        assert body.env_idx is None
        idx = instance(body.id)
        live[idx] = body.data_idx or 0
        payload = {"observation": f"task {body.data_idx}", "reward": 0, "done": False}
        if family == "sciworld":
            payload["task_description"] = "Your task is to boil water."
        return payload

    @app.post("/step")
    def step(body: _Body) -> Any:
        hits["step"] += 1
        idx = instance(getattr(body, key))
        if body.action == "bad":
            raise HTTPException(422, "action 'bad' is not one of the available actions")
        if body.action == "agentgym-error":
            return {"error": "The id 3 is not valid."}
        payload: dict[str, Any] = {
            "observation": f"did {body.action}",
            "reward": 0.5,
            "done": body.action == "finish"
        }
        if family != "searchqa":
            payload["score"] = 0.75
        else:
            payload["info"] = None
        assert live[idx] >= 0
        return payload

    @app.get("/observation")
    def observation(id: int | None = None, env_idx: int | None = None) -> str:
        hits["observation"] += 1
        if family == "searchqa":
            assert id is None
        return f"now at {instance(env_idx if family == 'searchqa' else id)}"

    @app.post("/close")
    def close(body: _Body) -> dict[str, Any]:
        hits["close"] += 1
        live.pop(instance(body.id))
        return {"closed": body.id}

    return app, hits


class _Server:
    """uvicorn in a thread, started on demand (optionally late)."""

    def __init__(self, app: FastAPI, port: int) -> None:
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"http://127.0.0.1:{port}"

    def start(self, delay: float = 0.0) -> None:
        if delay:
            threading.Timer(delay, self.thread.start).start()
            return
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "test server did not start"
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        if self.thread.is_alive():
            self.thread.join(timeout=10)


@pytest.fixture
def serve() -> Iterator[Any]:
    started: list[_Server] = []

    def run(family: str, delay: float = 0.0) -> tuple[_Server, collections.Counter[str]]:
        app, hits = double_app(family)
        server = _Server(app, _free_port())
        server.start(delay)
        started.append(server)
        return server, hits

    yield run
    for server in started:
        server.stop()


@pytest.mark.parametrize("family", ["babyai", "textcraft", "sciworld"])
def test_id_families_round_trip(serve: Any, family: str) -> None:
    server, hits = serve(family)
    with EnvClient(server.url, family, retries=0) as client:
        assert client.health()["env"] == family
        env_id = client.create()
        first = client.reset(env_id, data_idx=7)
        result = client.step(env_id, "turn left")
        assert client.observation(env_id) == f"now at {env_id}"
        client.close(env_id)
    if family == "sciworld":  # the task description is part of what the agent must see
        assert first.observation == "Your task is to boil water.\ntask 7"
    else:
        assert first.observation == "task 7"
    assert (result.observation, result.reward, result.done, result.score) == \
        ("did turn left", 0.5, False, 0.75)
    assert hits == {"health": 1, "create": 1, "reset": 1, "step": 1, "observation": 1, "close": 1}


def test_searchqa_uses_env_idx_and_bare_answers(serve: Any) -> None:
    server, _ = serve("searchqa")
    with EnvClient(server.url, "searchqa", retries=0) as client:
        env_idx = client.create()
        assert isinstance(env_idx, int)
        assert client.reset(env_idx, data_idx=3).observation == "Question 3?"
        assert client.observation(env_idx) == f"now at {env_idx}"
        result = client.step(env_idx, "<answer>Paris</answer>")
        assert (result.observation, result.reward, result.score) == \
            ("did <answer>Paris</answer>", 0.5, None)
        client.close(env_idx)
        with pytest.raises(EnvServerError) as gone:
            client.step(env_idx, "<search>x</search>")
    assert gone.value.status == 404


def test_refusals_carry_status_and_message_and_are_not_retried(serve: Any) -> None:
    server, hits = serve("babyai")
    with EnvClient(server.url, "babyai", retries=5, backoff=0.01) as client:
        env_id = client.create()
        client.reset(env_id, 0)
        with pytest.raises(EnvServerError) as bad:
            client.step(env_id, "bad")
        with pytest.raises(EnvServerError) as unknown:
            client.reset(999, 0)
        with pytest.raises(EnvServerError) as old_style:
            client.step(env_id, "agentgym-error")
    assert (bad.value.status, bad.value.message) == \
        (422, "action 'bad' is not one of the available actions")
    assert bad.value.detail == bad.value.message
    assert "HTTP 422" in str(bad.value) and "/step" in str(bad.value)
    assert (unknown.value.status, unknown.value.message) == (404, "unknown instance id 999")
    # AgentGym's servers answer failures with HTTP 200 and {"error": ...}: still an error here.
    assert (old_style.value.status, old_style.value.message) == (200, "The id 3 is not valid.")
    assert hits["step"] == 2 and hits["reset"] == 2  # one request each: 4xx is never retried


def test_validation_errors_name_the_field() -> None:
    detail = [{"loc": ["body", "id"], "msg": "Input should be a valid integer", "type": "x"}]
    transport = httpx.MockTransport(lambda request: httpx.Response(422, json={"detail": detail}))
    with EnvClient("http://env", "babyai", transport=transport) as client, \
            pytest.raises(EnvServerError) as exc:
        client.step(1, "turn left")
    assert exc.value.status == 422
    assert exc.value.message == "body.id: Input should be a valid integer"
    assert exc.value.detail == detail


def test_non_json_answers_are_errors() -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(502, text="Bad Gateway"))
    with EnvClient("http://env", "babyai", transport=transport) as client, \
            pytest.raises(EnvServerError) as exc:
        client.reset(1, 0)
    assert (exc.value.status, exc.value.message) == (502, "Bad Gateway")


def test_nothing_listening_fails_fast_without_retries() -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    started = time.monotonic()
    with EnvClient(url, "babyai", retries=0) as client, pytest.raises(EnvServerError) as exc:
        client.create()
    assert time.monotonic() - started < 5
    assert exc.value.status is None
    assert url in str(exc.value) and "1 attempt" in str(exc.value)


def test_connection_refused_is_retried_until_the_server_starts(serve: Any) -> None:
    server, hits = serve("babyai", delay=1.0)
    started = time.monotonic()
    with EnvClient(server.url, "babyai", retries=8, backoff=0.1) as client:
        env_id = client.create()  # not idempotent, but a refused connection never carried it
    assert time.monotonic() - started >= 0.9
    assert hits["create"] == 1 and env_id >= 0


def _flaky(fail: dict[str, type[Exception]], times: int) -> tuple[httpx.MockTransport, Any]:
    """A transport failing the first ``times`` requests to each path in ``fail``."""
    calls: collections.Counter[str] = collections.Counter()

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        calls[path] += 1
        if path in fail and calls[path] <= times:
            raise fail[path]("simulated", request=request)
        if path == "/close" and calls[path] > 1:
            return httpx.Response(404, json={"detail": "instance 1 is closed"})
        if path == "/reset":
            return httpx.Response(200, json={"observation": "o", "reward": 0, "done": False})
        return httpx.Response(200, json={"id": 1, "observation": "o", "reward": 0, "done": False})

    return httpx.MockTransport(handler), calls


def test_step_and_create_are_not_repeated_once_the_request_may_have_arrived() -> None:
    transport, calls = _flaky({"/step": httpx.ReadTimeout, "/create": httpx.RemoteProtocolError}, 1)
    with EnvClient("http://env", "babyai", retries=3, backoff=0.01, transport=transport) as client:
        with pytest.raises(EnvServerError) as step:
            client.step(1, "move forward")
        with pytest.raises(EnvServerError):
            client.create()
    assert calls["/step"] == 1 and calls["/create"] == 1
    assert step.value.status is None and "may have reached the server" in str(step.value)


def test_idempotent_calls_are_retried_after_an_ambiguous_failure() -> None:
    transport, calls = _flaky({"/reset": httpx.ReadTimeout, "/close": httpx.ReadError}, 2)
    with EnvClient("http://env", "babyai", retries=3, backoff=0.01, transport=transport) as client:
        assert client.reset(1, 0).observation == "o"
        client.close(1)  # the retry's 404 means an earlier attempt closed it
    assert calls["/reset"] == 3 and calls["/close"] == 3


def test_a_plain_404_on_close_is_still_an_error() -> None:
    transport, _ = _flaky({}, 0)
    with EnvClient("http://env", "babyai", retries=3, transport=transport) as client:
        client.close(1)
        with pytest.raises(EnvServerError) as exc:
            client.close(1)
    assert exc.value.status == 404


def test_retries_are_bounded() -> None:
    transport, calls = _flaky({"/health": httpx.ConnectError}, 100)
    with EnvClient("http://env", "babyai", retries=2, backoff=0.01,
                   transport=transport) as client, pytest.raises(EnvServerError) as exc:
        client.health()
    assert calls["/health"] == 3 and "3 attempt" in str(exc.value)


def test_async_client_runs_many_agents_on_one_pool(serve: Any) -> None:
    server, hits = serve("textcraft")

    async def agent(client: AsyncEnvClient, data_idx: int) -> str:
        env_id = await client.create()
        await client.reset(env_id, data_idx)
        result = await client.step(env_id, f"get {data_idx} stick")
        await client.close(env_id)
        return result.observation

    async def main() -> list[str]:
        async with AsyncEnvClient(server.url, "textcraft", max_connections=8) as client:
            return await asyncio.gather(*(agent(client, i) for i in range(32)))

    assert asyncio.run(main()) == [f"did get {i} stick" for i in range(32)]
    assert hits["create"] == hits["reset"] == hits["step"] == hits["close"] == 32


def test_async_client_errors_and_connect_retries(serve: Any) -> None:
    server, hits = serve("searchqa", delay=0.8)

    async def main() -> tuple[int, EnvServerError]:
        async with AsyncEnvClient(server.url, "searchqa", retries=8, backoff=0.1) as client:
            env_idx = await client.create()
            try:
                await client.step(env_idx + 1000, "<search>x</search>")
            except EnvServerError as exc:
                return env_idx, exc
        raise AssertionError("no error")

    env_idx, exc = asyncio.run(main())
    assert hits["create"] == 1 and env_idx >= 0
    assert exc.status == 404 and "unknown instance id" in exc.message


def test_health_of_an_agentgym_server_is_its_greeting() -> None:

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/":
            return httpx.Response(200, json="This is environment BabyAI.")
        return httpx.Response(404, json={"detail": "Not Found"})

    with EnvClient("http://env", "babyai", transport=httpx.MockTransport(handler)) as client:
        assert client.health() == {"status": "ok", "greeting": "This is environment BabyAI."}

    async def down(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, json={"detail": "shutting down"})

    async def main() -> None:
        async with AsyncEnvClient("http://env", transport=httpx.MockTransport(down)) as client:
            await client.health()

    with pytest.raises(EnvServerError, match="HTTP 503: shutting down"):
        asyncio.run(main())


def test_unknown_family_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown environment family 'webshop'"):
        EnvClient("http://env", "webshop")
