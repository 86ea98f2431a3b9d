"""Bad input gets a 4xx whose JSON message names the problem, and the server stays up.

AgentGym's servers answer most of these with HTTP 200 and ``{"error": ...}`` (or a 500);
here each is a real status code, asserted together with a piece of the message. The servers
here run with ``strict_actions``, so an unparseable action is a 422 too; AgentGym's clients'
default (the in-game answer, and ``false`` for a close with nothing to close) is tested in
``test_agentgym_clients.py``."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from env_servers.app import create_app
from env_servers.settings import ServeConfig
from env_servers.testing import server_thread

MAX_BODY = 64 * 1024
MAX_ACTION = 2000


@dataclasses.dataclass(frozen=True)
class Ids:
    url: str
    ready: int  # reset, mid-episode
    fresh: int  # created, never reset
    closed: int
    finished: int  # episode done


@pytest.fixture(scope="module")
def babyai() -> Iterator[Ids]:
    cfg = ServeConfig(env="babyai",
                      max_body_bytes=MAX_BODY,
                      max_action_chars=MAX_ACTION,
                      strict_actions=True)
    with server_thread(create_app("babyai", cfg)) as url:
        ids = [httpx.post(f"{url}/create").json()["id"] for _ in range(4)]
        for i in (ids[0], ids[3]):
            assert httpx.post(f"{url}/reset", json={"id": i, "data_idx": 1}).status_code == 200
        assert httpx.post(f"{url}/close", json={"id": ids[2]}).json() is True
        done = httpx.post(f"{url}/step", json={"id": ids[3], "action": "go to red ball 1"})
        assert done.json()["done"] is True
        yield Ids(url, ids[0], ids[1], ids[2], ids[3])
        # after the whole suite the server still answers, and instance 0 still plays
        assert httpx.get(f"{url}/health").status_code == 200
        again = httpx.post(f"{url}/step", json={"id": ids[0], "action": "turn left"})
        assert again.status_code == 200


def _big_chunks() -> Iterator[bytes]:
    # no Content-Length: the limit must hold for a streamed (chunked) body too
    yield b'{"id": 0, "action": "'
    for _ in range(MAX_BODY // 1024 + 8):
        yield b"x" * 1024
    yield b'"}'


# (name, method, path, request kwargs (ids substituted), status, words the message contains)
CASES: list[tuple[str, str, str, dict[str, Any], int, tuple[str, ...]]] = [
    ("unknown id", "POST", "/step", {
        "json": {
            "id": 987654,
            "action": "turn left"
        }
    }, 404, ("987654",)),
    ("closed id step", "POST", "/step", {
        "json": {
            "id": "CLOSED",
            "action": "turn left"
        }
    }, 404, ("was closed",)),
    ("closed id reset", "POST", "/reset", {
        "json": {
            "id": "CLOSED",
            "data_idx": 0
        }
    }, 404, ("was closed",)),
    ("closed id observation", "GET", "/observation", {
        "params": {
            "id": "CLOSED"
        }
    }, 404, ("was closed",)),
    ("render unknown id", "POST", "/render", {
        "json": {
            "id": 424242
        }
    }, 404, ("424242",)),
    ("render without id", "POST", "/render", {
        "json": {}
    }, 422, ("body needs id",)),
    ("reset before create", "POST", "/reset", {
        "json": {
            "id": 31337,
            "data_idx": 0
        }
    }, 404, ("no instance with id 31337",)),
    ("malformed JSON", "POST", "/step", {
        "content": b"{bad json",
        "headers": {
            "content-type": "application/json"
        }
    }, 400, ("malformed JSON",)),
    ("truncated JSON", "POST", "/step", {
        "content": b'{"id": 0, "action": "tu',
        "headers": {
            "content-type": "application/json"
        }
    }, 400, ("malformed JSON",)),
    ("form body", "POST", "/step", {
        "content": b"id=0&action=x",
        "headers": {
            "content-type": "application/x-www-form-urlencoded"
        }
    }, 415, ("application/json",)),
    ("JSON array body", "POST", "/step", {
        "json": [0, "turn left"]
    }, 422, ("body",)),
    ("JSON string body", "POST", "/step", {
        "json": "turn left"
    }, 422, ("body",)),
    ("no body", "POST", "/step", {}, 422, ("body", "required")),
    ("missing action", "POST", "/step", {
        "json": {
            "id": "READY"
        }
    }, 422, ("body.action",)),
    ("missing id", "POST", "/step", {
        "json": {
            "action": "turn left"
        }
    }, 422, ("body.id",)),
    ("missing data_idx", "POST", "/reset", {
        "json": {
            "id": "READY"
        }
    }, 422, ("body.data_idx",)),
    ("string id", "POST", "/step", {
        "json": {
            "id": "abc",
            "action": "turn left"
        }
    }, 422, ("body.id", "integer")),
    ("float id", "POST", "/step", {
        "json": {
            "id": 1.5,
            "action": "turn left"
        }
    }, 422, ("body.id",)),
    ("null id", "POST", "/step", {
        "json": {
            "id": None,
            "action": "turn left"
        }
    }, 422, ("body.id",)),
    ("negative id", "POST", "/step", {
        "json": {
            "id": -1,
            "action": "turn left"
        }
    }, 422, ("body.id", "greater than or equal to 0")),
    ("number action", "POST", "/step", {
        "json": {
            "id": "READY",
            "action": 5
        }
    }, 422, ("body.action",)),
    ("list action", "POST", "/step", {
        "json": {
            "id": "READY",
            "action": ["turn left"]
        }
    }, 422, ("body.action",)),
    ("string data_idx", "POST", "/reset", {
        "json": {
            "id": "READY",
            "data_idx": "first"
        }
    }, 422, ("body.data_idx",)),
    ("negative id in query", "GET", "/observation", {
        "params": {
            "id": -3
        }
    }, 422, ("query.id",)),
    ("string id in query", "GET", "/observation", {
        "params": {
            "id": "abc"
        }
    }, 422, ("query.id",)),
    ("missing id in query", "GET", "/observation", {}, 422, ("query.id", "required")),
    ("empty action", "POST", "/step", {
        "json": {
            "id": "READY",
            "action": ""
        }
    }, 422, ("empty",)),
    ("blank action", "POST", "/step", {
        "json": {
            "id": "READY",
            "action": " \n\t "
        }
    }, 422, ("empty",)),
    ("unknown action", "POST", "/step", {
        "json": {
            "id": "READY",
            "action": "dance a jig"
        }
    }, 422, ("unknown BabyAI action", "dance a jig")),
    ("unknown object", "POST", "/step", {
        "json": {
            "id": "READY",
            "action": "pickup the moon"
        }
    }, 422, ("unknown BabyAI action",)),
    ("huge action", "POST", "/step", {
        "json": {
            "id": "READY",
            "action": "turn left" * 500
        }
    }, 422, ("4500 characters", f"max_action_chars={MAX_ACTION}")),
    ("oversized body", "POST", "/step", {
        "json": {
            "id": "READY",
            "action": "x" * 2 * MAX_BODY
        }
    }, 413, (f"max_body_bytes={MAX_BODY}",)),
    ("oversized streamed body", "POST", "/step", {
        "content": "STREAM",
        "headers": {
            "content-type": "application/json"
        }
    }, 413, (f"max_body_bytes={MAX_BODY}",)),
    ("data_idx out of range", "POST", "/reset", {
        "json": {
            "id": "READY",
            "data_idx": -5
        }
    }, 422, ("data_idx -5", "data_idx >= 0")),
    ("negative data_idx", "POST", "/reset", {
        "json": {
            "id": "READY",
            "data_idx": -1
        }
    }, 422, ("data_idx -1", "out of range")),
    ("step before reset", "POST", "/step", {
        "json": {
            "id": "FRESH",
            "action": "turn left"
        }
    }, 409, ("no task yet", "/reset")),
    ("observation before reset", "GET", "/observation", {
        "params": {
            "id": "FRESH"
        }
    }, 409, ("no task yet",)),
    ("step after the episode", "POST", "/step", {
        "json": {
            "id": "FINISHED",
            "action": "turn left"
        }
    }, 409, ("finished", "reset")),
    ("wrong method on /step", "GET", "/step", {}, 405, ("GET /step", "POST")),
    ("wrong method on /observation", "POST", "/observation", {
        "json": {
            "id": 0
        }
    }, 405, ("POST /observation", "GET")),
    ("wrong method on /create", "DELETE", "/create", {}, 405, ("DELETE /create",)),
    ("unknown route", "POST", "/make_coffee", {
        "json": {}
    }, 404, ("no route", "/make_coffee")),
    ("other family's route", "GET", "/commands", {
        "params": {
            "id": 0
        }
    }, 404, ("no route", "babyai")),
]


def _substitute(value: Any, ids: Ids) -> Any:
    names = {"READY": ids.ready, "FRESH": ids.fresh, "CLOSED": ids.closed, "FINISHED": ids.finished}
    if isinstance(value, dict):
        return {k: _substitute(v, ids) for k, v in value.items()}
    return names.get(value, value) if isinstance(value, str) else value


def test_there_are_at_least_thirty_cases() -> None:
    assert len(CASES) >= 30
    assert len({name for name, *_ in CASES}) == len(CASES)


@pytest.mark.parametrize(("name", "method", "path", "kwargs", "status", "words"),
                         CASES,
                         ids=[c[0] for c in CASES])
def test_bad_input_is_a_4xx_naming_the_problem(babyai: Ids, name: str, method: str, path: str,
                                               kwargs: dict[str, Any], status: int,
                                               words: tuple[str, ...]) -> None:
    kwargs = _substitute(kwargs, babyai)
    if kwargs.get("content") == "STREAM":
        kwargs["content"] = _big_chunks()
    response = httpx.request(method, f"{babyai.url}{path}", timeout=30, **kwargs)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    detail = response.json()["detail"]
    assert isinstance(detail, str)
    for word in words:
        assert word in detail, (name, detail)


@pytest.fixture(scope="module")
def textcraft() -> Iterator[str]:
    with server_thread(create_app("textcraft", ServeConfig(env="textcraft",
                                                           strict_actions=True))) as url:
        yield url


@pytest.mark.parametrize(("body", "words"), [
    ({
        "goal": "minecraft:oak_planks"
    }, ("both commands and goal", "only goal")),
    ({
        "commands": "craft 1 x using 1 y"
    }, ("both commands and goal", "only commands")),
    ({
        "commands": "c",
        "goal": "unobtainium"
    }, ("'unobtainium' is not a TextCraft item",)),
    ({
        "commands": 12,
        "goal": "oak planks"
    }, ("body.commands",)),
])
def test_textcraft_create_rejects_bad_custom_tasks(textcraft: str, body: dict[str, Any],
                                                   words: tuple[str, ...]) -> None:
    before = httpx.get(f"{textcraft}/health").json()["instances"]
    response = httpx.post(f"{textcraft}/create", json=body)
    assert response.status_code == 422
    for word in words:
        assert word in response.json()["detail"]
    assert httpx.get(f"{textcraft}/health").json()["instances"] == before  # nothing leaked


def test_textcraft_unknown_action_and_view(textcraft: str) -> None:
    env_id = httpx.post(f"{textcraft}/create").json()["id"]
    response = httpx.post(f"{textcraft}/step", json={"id": env_id, "action": "dig a hole"})
    assert response.status_code == 422
    assert "unknown TextCraft action 'dig a hole'" in response.json()["detail"]
    response = httpx.get(f"{textcraft}/goal", params={"id": env_id + 100})
    assert response.status_code == 404 and str(env_id + 100) in response.json()["detail"]
    assert httpx.get(f"{textcraft}/health").status_code == 200


def test_searchqa_bad_input() -> None:
    with server_thread(create_app("searchqa", ServeConfig(env="searchqa",
                                                          strict_actions=True))) as url:
        env_idx = httpx.post(f"{url}/create", json={"id": 0}).json()
        wrong_key = httpx.post(f"{url}/step", json={"id": env_idx, "action": "<search>x</search>"})
        assert wrong_key.status_code == 422 and "body.env_idx" in wrong_key.json()["detail"]
        no_target = httpx.post(f"{url}/close", json={})
        assert no_target.status_code == 422 and "env_idx" in no_target.json()["detail"]
        out_of_range = httpx.post(f"{url}/create", json={"id": 10**6})
        assert out_of_range.status_code == 422 and "out of range" in out_of_range.json()["detail"]
        untagged = httpx.post(f"{url}/step", json={"env_idx": env_idx, "action": "no tags"})
        assert untagged.status_code == 422 and "<search>" in untagged.json()["detail"]
        assert httpx.get(f"{url}/health").json()["instances"] == 1


def test_close_with_nothing_to_close_is_false_not_an_error(babyai: Ids) -> None:
    for target in (babyai.closed, 424242):  # closed before, never created
        response = httpx.post(f"{babyai.url}/close", json={"id": target})
        assert response.status_code == 200 and response.json() is False


def test_render_where_the_family_draws_nothing_names_it(textcraft: str) -> None:
    env_id = httpx.post(f"{textcraft}/create").json()["id"]
    response = httpx.post(f"{textcraft}/render", json={"id": env_id})
    assert response.status_code == 404
    assert "textcraft instances cannot render" in response.json()["detail"]


def test_strict_actions_is_a_flag_and_shows_in_health(babyai: Ids) -> None:
    assert ServeConfig(env="babyai").strict_actions is False  # AgentGym's behaviour by default
    health = httpx.get(f"{babyai.url}/health").json()
    assert health["strict_actions"] is True and health["invalid_actions"] == 0
