"""AgentGym's own clients, unchanged, against these servers.

The three classes below reproduce the HTTP behaviour of AgentGym's ``agentenv`` clients
(WooooDyy/AgentGym ``agentenv/agentenv/envs/{babyai,textcraft,searchqa}.py``): the same routes
and payloads, the same way they pull the action out of an LLM reply, and their ``assert
response.status_code == 200`` on every call, so any non-200 answer kills the rollout as it
would in AgentGym. agentenv itself is not installed (it pulls in a training stack).

What broke those clients before, each a test here: an off-grammar or empty action (422), a
second close or a close of an unknown id (404), and a long pause during which the idle reaper
removed the instance the client keeps reusing (404 on its next reset). The pause is one call
on a ``ManualClock``; the reaper itself runs for real.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Iterator
from importlib import resources
from typing import Any, Protocol

import pytest
import requests

from env_servers.app import create_app
from env_servers.settings import ServeConfig
from env_servers.testing import ManualClock, craft_plan, server_thread

TIMEOUT = 30


class _RequestException(Exception):
    """What the clients raise when ``/create`` is not a 200 (requests' RequestException)."""


def _llm_action(reply: str) -> str:
    """BabyAI's and TextCraft's clients: the text after the one ``Action:``, only letters,
    digits, commas and spaces kept ("" when the reply has no ``Action:``)."""
    found = re.findall(r"Action:\s*(.*?)(?=\n|$)", reply, re.DOTALL)
    assert len(found) <= 1, "the clients answer a second Action: themselves, without the server"
    action = found[-1] if found else ""
    action = re.sub(r"[^A-Za-z0-9, ]+", "", action)
    return " ".join(action.split()).strip()


class BabyAIClient:
    """agentenv's BabyAIEnvClient: ``{"id"}`` bodies; the step's reward is its ``score``."""

    def __init__(self, base: str) -> None:
        self.base = base
        ok = requests.post(f"{base}/create", timeout=TIMEOUT)
        if ok.status_code != 200:
            raise _RequestException(f"Failed to create environment: {ok}")
        self.env_id = ok.json()["id"]

    def _post(self, path: str, data: dict[str, Any]) -> Any:
        data["id"] = self.env_id
        res = requests.post(f"{self.base}/{path}", json=data, timeout=TIMEOUT)
        assert res.status_code == 200
        return res.json()

    def reset(self, data_idx: int = 0) -> Any:
        response = self._post("reset", {"data_idx": data_idx})
        self.info = {k: response[k] for k in ("observation", "reward", "score", "done")}
        return response

    def step(self, reply: str) -> tuple[str, float, bool]:
        response = self._post("step", {"action": _llm_action(reply)})
        self.info = {k: response[k] for k in ("observation", "reward", "score", "done")}
        return response["observation"], response["score"], response["done"]

    def close(self) -> Any:
        return self._post("close", {})


class TextCraftClient:
    """agentenv's TextCraftEnvClient: ``/create`` with ``minecraft_dir``, ``commands``,
    ``goal`` (unused ones as null) starts a task; ``{"id"}`` bodies after that."""

    def __init__(self, base: str) -> None:
        self.base = base
        dir_info = {"minecraft_dir": "agentenv_textcraft/", "commands": None, "goal": None}
        ok = requests.post(f"{base}/create", timeout=TIMEOUT, json=dir_info)
        if ok.status_code != 200:
            raise _RequestException(f"Failed to create environment: {ok}")
        created = ok.json()
        self.env_id = created["id"]
        self.info = {"observation": created["observation"], "reward": 0, "done": False}

    def _post(self, path: str, data: dict[str, Any]) -> Any:
        data["id"] = self.env_id
        res = requests.post(f"{self.base}/{path}", json=data, timeout=TIMEOUT)
        assert res.status_code == 200
        return res.json()

    def _get(self, path: str) -> Any:
        res = requests.get(f"{self.base}/{path}?id={self.env_id}", timeout=TIMEOUT)
        assert res.status_code == 200
        return res.json()

    def reset(self, idx: int = 0) -> Any:
        response = self._post("reset", {"data_idx": idx})
        self.info.update({"observation": response["observation"], "reward": 0, "done": False})
        return response

    def step(self, reply: str) -> tuple[str, float, bool]:
        response = self._post("step", {"action": _llm_action(reply)})
        self.info = {k: response[k] for k in ("observation", "reward", "done")}
        return response["observation"], response["reward"], response["done"]

    def close(self) -> Any:
        return self._post("close", {})


class SearchQAClient:
    """agentenv's SearchQAEnvClient: ``/create`` with ``{"id": 0}`` answers a bare number,
    later bodies carry ``env_idx``; the whole LLM reply is the action."""

    def __init__(self, base: str) -> None:
        self.base = base
        ok = requests.post(f"{base}/create", json={"id": 0}, timeout=TIMEOUT)
        if ok.status_code != 200:
            raise _RequestException(f"Failed to create environment: {ok}")
        self.env_id = ok.json()

    def _post(self, path: str, data: dict[str, Any]) -> Any:
        data["env_idx"] = self.env_id
        res = requests.post(f"{self.base}/{path}", json=data, timeout=TIMEOUT)
        assert res.status_code == 200
        return res.json()

    def _get(self, path: str) -> Any:
        res = requests.get(f"{self.base}/{path}?env_idx={self.env_id}", timeout=TIMEOUT)
        assert res.status_code == 200
        return res.json()

    def observe(self) -> Any:
        return self._get("observation")

    def reset(self, id: int) -> Any:
        return self._post("reset", {"id": id})

    def step(self, reply: str) -> tuple[str, float, bool]:
        response = self._post("step", {"action": reply})
        return response["observation"], response["reward"], response["done"]

    def close(self) -> Any:
        return self._post("close", {})


class Client(Protocol):

    env_id: int

    def reset(self, idx: int) -> Any:
        ...

    def step(self, reply: str) -> tuple[str, float, bool]:
        ...

    def close(self) -> Any:
        ...


CLIENTS: dict[str, type[Any]] = {
    "babyai": BabyAIClient,
    "textcraft": TextCraftClient,
    "searchqa": SearchQAClient,
}


class Server:
    """One family's server on a frozen clock (idle_timeout_s 0.4 s of it: the reaper looks
    every 0.1 s of real time, and reaps only what ``pause`` makes idle)."""

    def __init__(self, url: str, clock: ManualClock) -> None:
        self.url = url
        self.clock = clock

    def health(self) -> dict[str, Any]:
        return dict(requests.get(f"{self.url}/health", timeout=TIMEOUT).json())

    def pause(self, seconds: float) -> None:
        """A long idle pause: ``seconds`` pass for the server; returns once it has reaped."""
        before = self.health()["reaped"]
        self.clock.advance(seconds)
        deadline = time.monotonic() + 10
        while self.health()["reaped"] == before:
            assert time.monotonic() < deadline, "the reaper never ran"
            time.sleep(0.05)


@pytest.fixture(scope="module", params=list(CLIENTS))
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    family = str(request.param)
    app = create_app(family, ServeConfig(env=family, idle_timeout_s=0.4))
    clock = ManualClock()
    app.state.manager.clock = clock
    with server_thread(app) as url:
        yield Server(url, clock)
        assert requests.get(f"{url}/health", timeout=TIMEOUT).json()["env"] == family


def _family(server: Server) -> str:
    return str(server.health()["env"])


def _client(server: Server) -> Any:
    return CLIENTS[_family(server)](server.url)


# -- what a correct agent replies, per family (the episodes must be winnable) ----------------


def _babyai_win(client: BabyAIClient) -> list[str]:
    client.reset(1)  # BabyAI-GoToRedBall-v0, seed 0: the red ball is in view
    return ["Thought:\nThe red ball is there.\n\nAction:\ngo to red ball 1"]


def _textcraft_win(client: TextCraftClient) -> list[str]:
    client.reset(0)
    commands = str(client._get("commands"))
    goal = str(client._get("goal")).removeprefix("minecraft:").replace("_", " ")
    return [f"Thought: next step.\nAction: {a}" for a in craft_plan(commands, goal)]


def _searchqa_golden(data_idx: int) -> str:
    path = resources.files("env_servers") / "corpora" / "searchqa" / "questions.jsonl"
    line = path.read_text(encoding="utf-8").splitlines()[data_idx]
    return str(json.loads(line)["golden_answers"][0])


def _searchqa_win(client: SearchQAClient) -> list[str]:
    prompt = client.reset(0)
    assert isinstance(prompt, str) and "Braetyr" in prompt and client.observe() == prompt
    return [
        "<think>I should look it up.</think><search>Braetyr chief export</search>",
        f"<think>Found it.</think><answer>{_searchqa_golden(0)}</answer>",
    ]


def _winning_replies(client: Any) -> list[str]:
    plans = {
        BabyAIClient: _babyai_win,
        TextCraftClient: _textcraft_win,
        SearchQAClient: _searchqa_win
    }
    return list(plans[type(client)](client))


def _play(client: Any, replies: list[str]) -> tuple[str, float, bool]:
    last: tuple[str, float, bool] = ("", 0.0, False)
    for reply in replies:
        last = client.step(reply)
        if last[2]:
            break
    return last


# -- the tests ------------------------------------------------------------------------------


def test_a_normal_episode_completes(server: Server) -> None:
    client = _client(server)
    observation, reward, done = _play(client, _winning_replies(client))
    assert done is True and 0 < reward <= 1, observation
    assert client.close() is True


# An LLM reply that misses the grammar, one without "Action:" (BabyAI and TextCraft send ""),
# and an empty reply: AgentGym's servers answer each with an in-game message and HTTP 200.
OFF_GRAMMAR = {
    "babyai": [
        ("Thought: up and away.\nAction: fly away",
         "The action is not recognized. Please check valid actions."),
        ("I think I should go to the red ball.", "No change in state."),
        ("", "No change in state."),
    ],
    "textcraft": [
        ("Thought: up and away.\nAction: fly away", "Could not execute fly away"),
        ("I think I should craft it.", "Could not execute "),
        ("", "Could not execute "),
    ],
    "searchqa": [
        ("fly away", "Your previous action is invalid. If you want to search, you should put "
         "the query between <search> and </search>."),
        ("<think>no tags closed</think> the answer is olives", "Your previous action is invalid."),
        ("", "Your previous action is invalid."),
    ],
}


def test_off_grammar_and_empty_actions_are_in_game_messages(server: Server) -> None:
    family = _family(server)
    client = _client(server)
    plan = _winning_replies(client)  # started the task
    before = server.health()["invalid_actions"]
    for reply, message in OFF_GRAMMAR[family]:
        observation, reward, done = client.step(reply)  # asserts HTTP 200 itself
        assert observation.startswith(message), (reply, observation)
        assert (reward, done) == (0, False)
        if family == "babyai":  # the action list follows, as in AgentGym
            assert '\nAvailable actions: ["turn left", "turn right"' in observation
    assert server.health()["invalid_actions"] == before + len(OFF_GRAMMAR[family])
    # the episode goes on: the mistakes cost nothing but rounds
    assert _play(client, plan)[2] is True
    assert client.close() is True


def test_the_step_info_marks_an_invalid_action(server: Server) -> None:
    family = _family(server)
    client = _client(server)
    _winning_replies(client)
    key = "env_idx" if family == "searchqa" else "id"
    answer = requests.post(f"{server.url}/step",
                           json={
                               key: client.env_id,
                               "action": "fly away"
                           },
                           timeout=TIMEOUT).json()
    assert answer["info"]["invalid_action"] is True and answer["info"]["reason"]
    valid = {"babyai": "turn left", "textcraft": "inventory", "searchqa": "<search>x</search>"}
    answer = requests.post(f"{server.url}/step",
                           json={
                               key: client.env_id,
                               "action": valid[family]
                           },
                           timeout=TIMEOUT).json()
    # a valid step's answer is AgentGym's, field for field (SearchQA's info is null there)
    assert answer.get("info") is None and ("info" in answer) == (family == "searchqa")
    client.close()


def test_closing_twice_or_an_unknown_id_answers_false(server: Server) -> None:
    client = _client(server)
    _winning_replies(client)
    assert client.close() is True
    assert client.close() is False  # the client asserted 200
    client.env_id = 10**6
    assert client.close() is False


def test_a_client_survives_a_long_idle_pause(server: Server) -> None:
    """AgentGym clients create their instance once and reuse it for the whole run."""
    client = _client(server)
    _winning_replies(client)
    client.step("Thought: wait.\nAction: inventory")
    recreated = server.health()["recreated"]
    server.pause(3600)  # an hour with no call: the reaper takes the instance
    assert server.health()["reaped"] >= 1
    plan = _winning_replies(client)  # its next reset works, on the same id
    observation, _, done = _play(client, plan)
    assert done is True, observation
    assert server.health()["recreated"] == recreated + 1
    assert client.close() is True


def test_a_pause_between_a_reset_and_a_step_is_a_404_naming_why(server: Server) -> None:
    """Only a reset brings a reaped id back: its episode is gone, so a step cannot continue."""
    family = _family(server)
    client = _client(server)
    _winning_replies(client)
    server.pause(3600)
    key = "env_idx" if family == "searchqa" else "id"
    lost = requests.post(f"{server.url}/step",
                         json={
                             key: client.env_id,
                             "action": "turn left"
                         },
                         timeout=TIMEOUT)
    assert lost.status_code == 404
    assert "without a call; POST /reset with this id recreates it" in lost.json()["detail"]
    assert client.close() is False  # reaped: nothing left to close, and it stays closed


def test_babyai_render_is_agentgyms_png_data_url() -> None:
    """agentenv-babyai's ``POST /render`` with ``{"id"}``: a JSON string, a PNG data URL."""
    with server_thread(create_app("babyai", ServeConfig(env="babyai"))) as url:
        client = BabyAIClient(url)
        client.reset(1)
        picture = client._post("render", {})
        assert isinstance(picture, str) and picture.startswith("data:image/png;base64,")
        png = base64.b64decode(picture.split(",", 1)[1])
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 100
        client.step("Action: turn left")  # the picture follows the game
        assert client._post("render", {}) != picture
        assert client.close() is True
        gone = requests.post(f"{url}/render", json={"id": client.env_id}, timeout=TIMEOUT)
        assert gone.status_code == 404 and "was closed" in gone.json()["detail"]
