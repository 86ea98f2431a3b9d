"""``python -m env_servers.eval`` end to end against a real ``env-servers serve --env babyai``."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch

from env_servers.agents import INSTRUCTIONS, Agent, Message, TransformersAgent, initial_messages
from env_servers.client import AsyncEnvClient, EnvClient
from env_servers.eval import EvalConfig, build_parser, main, run_episode
from trainyard_core.cli import config_from_args, parse_args

torch.set_num_threads(1)

_AVAILABLE = re.compile(r"Available actions: \[(.*)\]")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_server(*options: str) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    proc = subprocess.Popen([
        sys.executable, "-m", "env_servers.cli", "serve", "--env", "babyai", "--port",
        str(port), "log_level=warning", *options
    ])
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("env-servers serve --env babyai did not come up")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def babyai_url() -> Iterator[str]:
    proc, url = _start_server()
    yield url
    proc.terminate()
    proc.wait(timeout=20)


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weights llama (hidden size 32) with a word-level tokenizer built here."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    path = tmp_path_factory.mktemp("tiny-llama")
    words = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    words.pre_tokenizer = pre_tokenizers.Whitespace()
    corpus = [*INSTRUCTIONS.values(), "Action: turn left move forward go to red ball 1"]
    words.train_from_iterator(corpus,
                              trainers.WordLevelTrainer(special_tokens=["[UNK]", "[PAD]", "</s>"]))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=words,
                                        unk_token="[UNK]",
                                        pad_token="[PAD]",
                                        eos_token="</s>")
    tokenizer.save_pretrained(path)
    config = LlamaConfig(vocab_size=tokenizer.vocab_size,
                         hidden_size=32,
                         intermediate_size=64,
                         num_hidden_layers=2,
                         num_attention_heads=4,
                         num_key_value_heads=4,
                         max_position_embeddings=1024,
                         eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(path)
    return path


def _run_dir(root: Path) -> Path:
    (run_dir,) = root.iterdir()
    return run_dir


def _episodes(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "trajectories.jsonl").read_text().splitlines()]


def test_defaults_come_from_the_compose_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENV", "textcraft")
    monkeypatch.setenv("MODEL", "gpt-4o-mini")
    monkeypatch.setenv("MAX_ROUND", "7")
    cfg = config_from_args(EvalConfig, parse_args(build_parser(), []))
    assert (cfg.env, cfg.model, cfg.max_rounds) == ("textcraft", "gpt-4o-mini", 7)
    cfg = config_from_args(EvalConfig,
                           parse_args(build_parser(), ["--env", "babyai", "--max_round", "3"]))
    assert (cfg.env, cfg.max_rounds) == ("babyai", 3)
    monkeypatch.delenv("ENV")
    monkeypatch.delenv("MAX_ROUND")
    cfg = config_from_args(EvalConfig, parse_args(build_parser(), []))
    assert (cfg.env, cfg.max_rounds, cfg.server_url) == ("babyai", 10, "http://127.0.0.1:36001")


@pytest.mark.parametrize("argv, env, message", [
    (["--env", "webshop"], {}, "env must be one of"),
    (["--num-tasks", "0"], {}, "num_tasks must be >= 1"),
    (["--agent", "gpt"], {}, "agent must be auto or one of"),
    ([], {
        "MAX_ROUND": "ten"
    }, "MAX_ROUND must be a whole number"),
])
def test_bad_settings_exit_2(argv: list[str], env: dict[str, str], message: str,
                             monkeypatch: pytest.MonkeyPatch,
                             capsys: pytest.CaptureFixture[str]) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_no_server_is_reported_before_any_model_loads(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    code = main([
        "--env", "babyai", "--server-url", url, "--retries", "0", "--model",
        str(tmp_path / "no-such-model"), "--output-dir",
        str(tmp_path / "runs")
    ])
    assert code == 1
    err = capsys.readouterr().err
    assert url in err and "env-servers serve --env babyai" in err
    assert not (tmp_path / "runs").exists()


def test_a_server_of_another_family_is_refused(babyai_url: str, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--env", "textcraft", "--server-url", babyai_url, "--output-dir",
                 str(tmp_path)]) == 2
    assert "serves 'babyai', not 'textcraft'" in capsys.readouterr().err


def test_random_agent_on_five_babyai_tasks(babyai_url: str, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "--env", "babyai", "--agent", "random", "--num-tasks", "5", "--max-rounds", "10",
        "--server-url", babyai_url
    ]
    assert main([*argv, "--concurrency", "2", "--output-dir", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    assert "success_rate" in out and "run directory" in out
    run_dir = _run_dir(tmp_path / "a")
    assert run_dir.name.startswith("babyai-random-")
    assert (run_dir / "config.yaml").is_file()
    episodes = _episodes(run_dir)
    assert [e["data_idx"] for e in episodes] == [0, 1, 2, 3, 4]
    for episode in episodes:
        assert (episode["env"], episode["agent"], episode["model"]) == ("babyai", "random", None)
        assert episode["error"] is None
        assert 1 <= episode["rounds"] == len(episode["steps"]) <= 10
        assert episode["success"] == (episode["done"] and episode["reward"] > 0)
        assert episode["rounds"] == 10 or episode["done"]
        # The conversation: instructions, ack, then observation / reply pairs.
        messages = episode["messages"]
        assert messages[0]["content"] == INSTRUCTIONS["babyai"]
        observations = [messages[2]["content"]] + [s["observation"] for s in episode["steps"]]
        for step, before in zip(episode["steps"], observations, strict=False):
            (listed,) = _AVAILABLE.findall(before)
            assert f'"{step["action"]}"' in listed  # only actions the observation offered
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["agent"] == "random" and summary["num_tasks"] == 5
    assert summary["success_rate"] == sum(e["success"] for e in episodes) / 5
    assert summary["mean_reward"] == pytest.approx(sum(e["reward"] for e in episodes) / 5)
    assert summary["mean_rounds"] == sum(e["rounds"] for e in episodes) / 5
    assert summary["errors"] == 0 and summary["concurrency"] == 2
    assert [row["data_idx"] for row in summary["tasks"]] == [0, 1, 2, 3, 4]
    # Concurrency changes nothing: the same tasks, one at a time, give the same episodes.
    assert main([*argv, "--output-dir", str(tmp_path / "b")]) == 0
    again = _episodes(_run_dir(tmp_path / "b"))
    assert [e["steps"] for e in again] == [e["steps"] for e in episodes]
    # Every instance was closed.
    assert httpx.get(f"{babyai_url}/health").json()["instances"] == 0


def test_tiny_transformers_model_on_two_tasks(babyai_url: str, tiny_llama: Path,
                                              tmp_path: Path) -> None:
    assert main([
        "--env", "babyai", "--agent", "transformers", "--model",
        str(tiny_llama), "--num-tasks", "2", "--max-rounds", "3", "--max-new-tokens", "6",
        "--data-idx-start", "40", "--server-url", babyai_url, "--output-dir",
        str(tmp_path)
    ]) == 0
    run_dir = _run_dir(tmp_path)
    episodes = _episodes(run_dir)
    assert [e["data_idx"] for e in episodes] == [40, 41]
    for episode in episodes:
        assert episode["error"] is None
        assert episode["rounds"] == 3 or episode["done"]
        # A random model's words: each reply reached the server, or came back as a refusal.
        for step in episode["steps"]:
            assert step["reply"] and step["observation"]
            assert ("reward" in step) != step["observation"].startswith("Invalid action:")
        assert episode["messages"][-1]["role"] == "user"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["agent"] == "transformers" and summary["model"] == str(tiny_llama)
    assert summary["max_new_tokens"] == 6 and summary["max_rounds"] == 3


def test_server_refusals_are_errors_not_silent_zeros(tmp_path: Path) -> None:
    proc, url = _start_server("max_instances=1")
    try:
        with EnvClient(url, "babyai") as client:
            held = client.create()  # the one instance the server allows
            code = main([
                "--env", "babyai", "--agent", "random", "--num-tasks", "3", "--server-url", url,
                "--output-dir",
                str(tmp_path)
            ])
            client.close(held)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert code == 1  # every task failed
    summary = json.loads((_run_dir(tmp_path) / "summary.json").read_text())
    assert summary["errors"] == 3 and summary["success_rate"] == 0.0
    assert all("HTTP 429" in row["error"] for row in summary["tasks"])


def test_transformers_agent_keeps_the_conversation_inside_its_context(tiny_llama: Path) -> None:
    agent = TransformersAgent("babyai", model=str(tiny_llama), max_new_tokens=4, max_context=300)
    first = initial_messages("babyai", "Available actions: [\"turn left\"]")
    rounds = [{
        "role": "assistant",
        "content": "Action: turn left"
    }, {
        "role": "user",
        "content": "move forward " * 40
    }] * 5
    inputs = agent._fit(first + rounds)
    assert inputs["input_ids"].shape[1] <= 300 - 4
    # The instructions stay; the oldest rounds went.
    prefix = agent._encode(first[:2])["input_ids"][0][:20]
    assert inputs["input_ids"][0][:20].tolist() == prefix.tolist()
    assert inputs["input_ids"].shape[1] < agent._encode(first + rounds)["input_ids"].shape[1]
    reply = agent.act(first + rounds)
    assert isinstance(reply, str)
    # The reply is the prefilled marker plus at most max_new_tokens generated tokens.
    assert reply.startswith("Action:")
    prefill = len(agent.tokenizer(agent.prefill, add_special_tokens=False)["input_ids"])
    assert len(agent.tokenizer(reply, add_special_tokens=False)["input_ids"]) <= 4 + prefill
    assert inputs["input_ids"][0][-prefill:].tolist() == agent.tokenizer(
        agent.prefill, add_special_tokens=False)["input_ids"]


def test_progress_follows_the_log_level(babyai_url: str, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """Progress (the notices and the tqdm bar) goes to stderr and --quiet silences it; the
    result tables and the run directory stay on stdout either way."""
    argv = [
        "--env", "babyai", "--agent", "random", "--num-tasks", "2", "--max-rounds", "3",
        "--server-url", babyai_url
    ]
    assert main([*argv, "--output-dir", str(tmp_path / "loud")]) == 0
    out, err = capsys.readouterr()
    assert "running 2 tasks" in err and "babyai tasks" in err  # the notice and the bar
    assert "run directory" in out and "babyai tasks" not in out
    assert main([*argv, "--output-dir", str(tmp_path / "quiet"), "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert "success_rate" in out and "run directory" in out


class _FlyAway(Agent):
    """Replies with an action no BabyAI world has."""

    name = "fly-away"

    def act(self, messages: Sequence[Message]) -> str:
        return "Thought: up.\nAction: fly away"


def test_in_game_answers_to_bad_actions_are_counted(babyai_url: str) -> None:
    # The server answers an unparseable action in-game (200) by default; the runner still
    # counts it as the agent's invalid action instead of a normal step.
    async def one() -> dict[str, Any]:
        async with AsyncEnvClient(babyai_url, "babyai") as client:
            return await run_episode(client, _FlyAway("babyai"), "babyai", 0, max_rounds=3)

    record = asyncio.run(one())
    assert record["error"] is None
    assert record["invalid_actions"] == 3
    assert "not recognized" in record["steps"][0]["observation"]
