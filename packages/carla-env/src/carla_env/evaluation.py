"""Closed-loop evaluation over the Gymnasium vector API: one evaluator, one baseline set.

Open-loop losses say how well a model imitates recorded states; only driving it shows whether
its own mistakes compound. ``evaluate`` drives a batch policy on any same-step-autoreset
vector env of the driving contract (``carla_env.contract``) through ``reset``, ``step`` and
``render`` alone, reading what it needs from ``info``: the event keys of each step for the
metrics, and the observation keys (``episode_seed``, ``episode_step``, ``expert_action``) for
the baselines. So the embedded batch and CARLA servers give the same table.

Env ``i`` starts from env seed ``seed + i``; each env plays a fixed share of the episodes
(env ``i`` plays episodes ``i, i + N, i + 2N, ...``), so the episodes counted do not depend on
which env happens to finish first. With ``num_envs == episodes`` on the embedded backend that
is one world per episode in a single batch (``evaluate_policies``' default); training uses env
seeds below 1,000,000, so the default seeds are held out. An embedded episode depends only on
its seed and its actions, so it can be replayed alone, which is how the video is recorded
without slowing the batch.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import gymnasium as gym
import numpy as np

from carla_env.config import SimulatorConfig
from carla_env.contract import EXPERT_BACKENDS, EXPERT_KEY, action_space
from carla_env.sim.counter_rng import uniform
from trainyard_core.io import atomic_write_text

__all__ = [
    "BASELINES", "EVAL_FORMAT", "OUTCOMES", "BatchPolicy", "autopilot_policy", "evaluate",
    "evaluate_policies", "needs_expert", "random_policy", "record_video", "table_row"
]

log = logging.getLogger(__name__)

# (observations of the batch, the info returned with them) -> actions (N, 3).
BatchPolicy = Callable[[dict[str, np.ndarray], dict[str, Any]], np.ndarray]
OUTCOMES = ("route_completed", "collision", "off_road", "timeout")
EVAL_FORMAT = "trainyard-closed-loop/1"


def _named(policy: Callable[..., np.ndarray], name: str) -> BatchPolicy:
    policy.__name__ = policy.__qualname__ = name
    return policy


def needs_expert(policy: BatchPolicy) -> bool:
    """Whether ``policy`` reads ``info["expert_action"]`` (its ``needs_expert`` attribute)."""
    return bool(getattr(policy, "needs_expert", False))


def autopilot_policy() -> BatchPolicy:
    """The backend's expert: the ``expert_action`` the env puts in ``info``.

    It marks itself ``needs_expert`` so ``evaluate_policies`` turns
    ``SimulatorConfig.expert_action`` on for it alone (the key costs throughput).
    """

    def act(obs: dict[str, np.ndarray], info: dict[str, Any]) -> np.ndarray:
        return np.asarray(info[EXPERT_KEY], dtype=np.float32)

    policy = _named(act, "autopilot")
    policy.needs_expert = True  # type: ignore[attr-defined]
    return policy


def random_policy(seed: int = 0) -> BatchPolicy:
    """Uniform random throttle, steer and brake.

    The draws hash (seed, the episode's seed, its step), not a shared generator, so an episode
    gets the same actions whichever batch or env it runs in (the video replays it alone).
    """
    box = action_space()
    low, high = box.low, box.high

    def act(obs: dict[str, np.ndarray], info: dict[str, Any]) -> np.ndarray:
        u = uniform(seed % 2**64, info["episode_seed"][:, None], info["episode_step"][:, None],
                    np.arange(3)[None, :])
        return (low + u * (high - low)).astype(np.float32)

    return _named(act, "random")


BASELINES: dict[str, Callable[..., BatchPolicy]] = {
    "autopilot": autopilot_policy,
    "random": random_policy,
}


class _Episodes:
    """Per-env sums over each env's current episode."""

    def __init__(self, n: int) -> None:
        self.done = np.zeros(n, dtype=bool)
        self.outcome = np.full(n, "", dtype=object)
        self.route_progress = np.zeros(n)
        self.distance = np.zeros(n)
        self.collision = np.zeros(n, dtype=bool)
        self.off_road = np.zeros(n, dtype=bool)
        self.lane_invasions = np.zeros(n, dtype=np.int64)
        self.speed = np.zeros(n)
        self.abs_jerk = np.zeros(n)
        self.ret = np.zeros(n)
        self.steps = np.zeros(n, dtype=np.int64)

    def restart(self, i: int) -> None:
        """Start counting env ``i``'s next episode."""
        for value in vars(self).values():
            value[i] = "" if value.dtype == object else 0

    def add(self, counting: np.ndarray, reward: np.ndarray, terminated: np.ndarray,
            truncated: np.ndarray, info: dict[str, Any]) -> None:
        # Event keys describe the step just taken, before a finished env was reset.
        run = counting & ~self.done
        self.steps += run
        self.ret += np.where(run, reward, 0.0)
        self.distance += np.where(run, info["progress"], 0.0)
        self.speed += np.where(run, info["velocity"], 0.0)
        self.abs_jerk += np.where(run, np.abs(info["jerk"]), 0.0)
        self.lane_invasions += run & info["lane_invasion"]
        self.route_progress = np.where(run, info["route_progress"], self.route_progress)
        self.collision |= run & info["collision"]
        self.off_road |= run & info["off_road"]
        # One outcome per episode; a crash on the finish line is a crash.
        ending = run & (terminated | truncated)
        for name, hit in (("collision", info["collision"]), ("off_road", info["off_road"]),
                          ("route_completed", info["route_completed"]), ("timeout", truncated)):
            self.outcome[ending & hit & (self.outcome == "")] = name
        self.done |= ending

    def record(self, i: int, seed: int) -> dict[str, Any]:
        steps = max(int(self.steps[i]), 1)
        completed = self.outcome[i] == "route_completed"
        return {
            "seed": int(seed),
            "outcome": str(self.outcome[i]),
            "route_progress": 1.0 if completed else float(self.route_progress[i]),
            "distance_m": float(self.distance[i]),
            "collisions": int(self.collision[i]),
            "off_road": bool(self.off_road[i]),
            "lane_invasions": int(self.lane_invasions[i]),
            "mean_speed_mps": float(self.speed[i] / steps),
            "mean_abs_jerk": float(self.abs_jerk[i] / steps),
            "return": float(self.ret[i]),
            "steps": int(self.steps[i]),
        }


def _check_expert(policy: BatchPolicy, name: str, info: dict[str, Any], where: str) -> None:
    if needs_expert(policy) and EXPERT_KEY not in info:
        raise ValueError(f"policy {name!r} needs info[{EXPERT_KEY!r}], which {where} does not "
                         f"give (only backends {', '.join(EXPERT_BACKENDS)} have an expert, "
                         f"with expert_action=true)")


def _step_limit(envs: gym.vector.VectorEnv, per_env: int) -> int | None:
    """Steps within which every env's share must end, when the env says its episode limit."""
    limit = getattr(getattr(envs, "config", None), "max_episode_steps", None)
    return None if limit is None else int(limit) * per_env


def _play(envs: gym.vector.VectorEnv,
          policy: BatchPolicy,
          episodes: int,
          seed: int,
          name: str,
          frames: list[np.ndarray] | None = None) -> list[dict[str, Any]]:
    """Play ``episodes`` episodes; ``frames`` collects env 0's first episode."""
    n = envs.num_envs
    # Env i plays episodes i, i + n, ...: a fixed share, whichever env finishes first.
    share = np.array([len(range(i, episodes, n)) for i in range(n)], dtype=np.int64)
    starts = [seed + i for i in range(n)]
    # Vector envs take one seed per env (Gymnasium's stubs say int only).
    obs, info = envs.reset(seed=cast(Any, starts))
    _check_expert(policy, name, info, "this env")
    tally = _Episodes(n)
    played = np.zeros(n, dtype=np.int64)
    found: dict[int, dict[str, Any]] = {}
    several = bool(share.max() > 1)
    if frames is not None:
        frames.append(_frame(envs))
    limit = _step_limit(envs, int(share.max()))
    steps = 0
    while len(found) < episodes:
        if limit is not None and steps >= limit:
            raise RuntimeError(f"{episodes - len(found)} episode(s) did not end within "
                               f"{limit} steps (max_episode_steps per episode)")
        obs, reward, terminated, truncated, info = envs.step(policy(obs, info))
        steps += 1
        tally.add(played < share, reward, terminated, truncated, info)
        for i in np.flatnonzero(tally.done).tolist():
            record = tally.record(i, starts[i])
            if several:
                record["episode_of_env"] = int(played[i])
            found[int(played[i]) * n + i] = record
            played[i] += 1
            tally.restart(i)
        if frames is not None and played[0] == 0:
            # After env 0's last step it has already been reset: that frame is not kept.
            frames.append(_frame(envs))
    return [found[k] for k in sorted(found)]


def _frame(envs: gym.vector.VectorEnv) -> np.ndarray:
    frames = envs.render()
    if frames is None:
        raise ValueError("recording a video needs an env with render_mode='rgb_array'")
    return np.asarray(frames[0])


def _summarize(name: str, per_episode: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(per_episode)
    total = lambda key: float(sum(e[key] for e in per_episode))  # noqa: E731
    steps = total("steps")
    km = total("distance_m") / 1000.0
    collisions = total("collisions")
    return {
        "policy": name,
        "episodes": n,
        "collision_free": sum(e["collisions"] == 0 for e in per_episode) / n,
        "route_completion": total("route_progress") / n,
        "completed": sum(e["outcome"] == "route_completed" for e in per_episode) / n,
        # Undefined (None) when nothing was driven.
        "collisions_per_km": collisions / km if km > 0 else None,
        "off_road": sum(bool(e["off_road"]) for e in per_episode),
        "lane_invasions": int(total("lane_invasions")),
        "km_driven": km,
        "mean_speed_mps": sum(e["mean_speed_mps"] * e["steps"] for e in per_episode) / steps,
        "mean_abs_jerk": sum(e["mean_abs_jerk"] * e["steps"] for e in per_episode) / steps,
    }


def evaluate(envs: gym.vector.VectorEnv,
             policy: BatchPolicy,
             episodes: int,
             seed: int,
             name: str = "policy") -> dict[str, Any]:
    """``episodes`` episodes of ``policy`` on ``envs`` (same-step autoreset), env ``i`` from
    env seed ``seed + i``.

    Returns the summary (see ``table_row`` for its columns) with every episode's record in
    ``per_episode``, ordered env 0's first, env 1's first, ..., env 0's second, ...; a
    record's ``seed`` is its env's start seed, and ``episode_of_env`` counts the episodes
    before it on that env when an env plays several.
    """
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    mode = envs.metadata.get("autoreset_mode")
    if mode is not None and mode != gym.vector.AutoresetMode.SAME_STEP:
        raise ValueError(f"evaluate needs a vector env with same-step autoreset "
                         f"(AutoresetMode.SAME_STEP), got {mode}")
    per_episode = _play(envs, policy, episodes, seed, name)
    summary = _summarize(name, per_episode)
    summary["per_episode"] = per_episode
    return summary


def table_row(summary: dict[str, Any]) -> dict[str, Any]:
    """A summary without its per-episode records and video: one row of the results table."""
    return {k: v for k, v in summary.items() if k not in ("per_episode", "video")}


def _make_envs(sim: SimulatorConfig, num_envs: int, policy: BatchPolicy, name: str,
               **kwargs: Any) -> gym.vector.VectorEnv:
    """The vector env for ``policy``: with the expert's actions only if it reads them."""
    from carla_env.envs import make_vector_env

    want = needs_expert(policy)
    if want and sim.backend not in EXPERT_BACKENDS:
        _check_expert(policy, name, {}, f"the {sim.backend} backend")
    return make_vector_env(num_envs, dataclasses.replace(sim, expert_action=want), **kwargs)


def record_video(sim: SimulatorConfig,
                 policy: BatchPolicy,
                 seed: int,
                 path: str | Path,
                 fps: int | None = None) -> dict[str, Any]:
    """Replay the episode of env seed ``seed`` alone, save it as GIF/MP4, return its record."""
    from carla_env.video import write_video

    name = str(getattr(policy, "__name__", "policy"))
    envs = _make_envs(sim, 1, policy, name, render_mode="rgb_array")
    frames: list[np.ndarray] = []
    try:
        record = _play(envs, policy, 1, seed, name, frames)[0]
    finally:
        envs.close()
    write_video(frames, path, fps=fps or sim.fps)
    return record


def evaluate_policies(sim: SimulatorConfig,
                      policies: dict[str, BatchPolicy],
                      episodes: int = 100,
                      seed: int = 1_000_000,
                      out_dir: str | Path | None = None,
                      video_policy: str | None = None,
                      video_format: str = "gif",
                      num_envs: int | None = None) -> list[dict[str, Any]]:
    """Evaluate every policy on the same env seeds; write ``eval.json`` and the episode video.

    The vector env comes from ``carla_env.envs.make_vector_env`` on ``sim.backend`` with
    ``num_envs`` envs (default: one world per episode on the embedded backend, one server on
    CARLA). ``out_dir`` gets ``eval.json`` (all summaries, per-episode records included) and
    ``episode.<video_format>`` of ``video_policy`` (env seed ``seed`` replayed alone).
    Returns the table rows.
    """
    if not policies:
        raise ValueError("no policies to evaluate")
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    if video_policy is not None:
        if video_policy not in policies:
            raise ValueError(f"video_policy {video_policy!r} is not one of {list(policies)}")
        if out_dir is None:
            raise ValueError("video_policy needs an out_dir to write the video to")
    if video_format not in ("gif", "mp4"):
        raise ValueError(f"video_format must be gif or mp4, got {video_format!r}")
    if num_envs is None:
        num_envs = episodes if sim.backend == "embedded" else 1
    if num_envs < 1:
        raise ValueError(f"num_envs must be >= 1, got {num_envs}")
    for name, policy in policies.items():  # before any server is reached or episode driven
        if needs_expert(policy) and sim.backend not in EXPERT_BACKENDS:
            _check_expert(policy, name, {}, f"the {sim.backend} backend")
    out = Path(out_dir) if out_dir is not None else None
    summaries, seconds = [], {}
    for name, policy in policies.items():
        start = time.perf_counter()
        envs = _make_envs(sim, num_envs, policy, name)
        try:
            summary = evaluate(envs, policy, episodes, seed, name=name)
        finally:
            envs.close()
        if out is not None and name == video_policy:
            path = out / f"episode.{video_format}"
            video = record_video(sim, policy, seed, path)
            summary = {
                **table_row(summary), "video": {
                    "path": str(path),
                    "seed": seed,
                    "steps": video["steps"],
                    "outcome": video["outcome"]
                },
                "per_episode": summary["per_episode"]
            }
        seconds[name] = time.perf_counter() - start
        log.info("%s: %d episodes in %.1f s", name, episodes, seconds[name])
        summaries.append(summary)
    if out is not None:
        report = {
            "format": EVAL_FORMAT,
            "episodes": episodes,
            "env_seeds": [seed, seed + min(num_envs, episodes) - 1],
            "simulator": dataclasses.asdict(sim),
            "wall_seconds": seconds,
            "policies": summaries,
        }
        atomic_write_text(out / "eval.json", json.dumps(report, indent=2) + "\n")
    return [table_row(s) for s in summaries]
