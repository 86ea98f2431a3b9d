"""Closed-loop evaluation on the embedded simulator: driving metrics over held-out seeds.

Open-loop losses say how well a model imitates recorded states; only driving it shows whether
its own mistakes compound. ``evaluate_closed_loop`` runs one episode in each of ``episodes``
worlds of a single ``EmbeddedVectorEnv`` (one batched step for all of them), world ``i`` reset
with env seed ``seed + i``; training uses seeds below 1,000,000, so the default seeds are
held out. A world's episode depends only on its seed and its actions, so any episode can be
replayed alone, which is how the episode video is recorded without slowing the batch.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from carla_env import SimulatorConfig
from carla_env.embedded import EmbeddedVectorEnv
from carla_env.sim.counter_rng import uniform
from carla_env.video import write_video
from driving_vla import DrivingVLA
from trainers_rl.evaluation.controller import ControllerConfig, WaypointController
from trainyard_core.io import atomic_write_text

__all__ = [
    "MODEL_MODES", "OUTCOMES", "BatchPolicy", "autopilot_policy", "ego_speed",
    "evaluate_closed_loop", "evaluate_policies", "evaluate_vector_env", "model_policy",
    "random_policy", "record_video", "table_row"
]

# Observations of the batch and the env they came from -> actions (N, 3).
BatchPolicy = Callable[[dict[str, np.ndarray], EmbeddedVectorEnv], np.ndarray]
OUTCOMES = ("route_completed", "collision", "off_road", "timeout")
MODEL_MODES = ("controls", "waypoints")


def _named(policy: BatchPolicy, name: str) -> BatchPolicy:
    policy.__name__ = policy.__qualname__ = name
    return policy


def ego_speed(obs: dict[str, np.ndarray], envs: EmbeddedVectorEnv) -> np.ndarray:
    """The ego speeds (N,) in m/s: the state observation's, else the speedometer's."""
    if "state" in obs:
        return obs["state"][:, 0].astype(np.float64) * envs.world.speed_limit
    return envs.world.v.copy()


def autopilot_policy() -> BatchPolicy:
    """The simulator's expert, which reads the true state of every world."""

    def act(obs: dict[str, np.ndarray], envs: EmbeddedVectorEnv) -> np.ndarray:
        return envs.autopilot()

    return _named(act, "autopilot")


def random_policy(seed: int = 0) -> BatchPolicy:
    """Uniform random throttle, steer and brake.

    The draws hash (seed, the world's episode seed, its step), not a shared generator, so an
    episode gets the same actions whichever batch it runs in (the video replays it alone).
    """

    def act(obs: dict[str, np.ndarray], envs: EmbeddedVectorEnv) -> np.ndarray:
        w = envs.world
        u = uniform(seed % 2**64, w.seed[:, None], w.steps[:, None], np.arange(3)[None, :])
        low, high = envs.single_action_space.low, envs.single_action_space.high
        return (low + u * (high - low)).astype(np.float32)

    return _named(act, "random")


def model_policy(model: DrivingVLA,
                 mode: str = "controls",
                 controller_config: ControllerConfig | None = None) -> BatchPolicy:
    """A DrivingVLA driving through its control head or its waypoint head.

    ``controls``: the control head's actions (``model.act``). ``waypoints``: the predicted
    waypoints, followed by a ``WaypointController`` (its control_dt set to the env's).
    """
    if mode not in MODEL_MODES:
        raise ValueError(f"mode must be one of {', '.join(MODEL_MODES)}, got {mode!r}")
    model.eval()
    keys = list(model.config.observation_keys)
    controller = WaypointController(controller_config)

    def act(obs: dict[str, np.ndarray], envs: EmbeddedVectorEnv) -> np.ndarray:
        missing = [k for k in keys if k not in obs]
        if missing:
            raise ValueError(f"the model reads observation(s) {missing} that the env does not "
                             f"give (env keys: {sorted(obs)})")
        with torch.no_grad():
            if mode == "controls":
                return model.act(obs).float().cpu().numpy()
            inputs = {k: torch.as_tensor(obs[k]).to(model.device) for k in keys}
            waypoints = model(**inputs).waypoints.double().cpu().numpy()
        dt = envs.config.control_dt
        if controller.config.control_dt != dt:
            controller.config = dataclasses.replace(controller.config, control_dt=dt)
        return controller.act(waypoints, ego_speed(obs, envs), new_episode=envs.world.steps == 0)

    return _named(act, f"model-{mode}")


class _Episodes:
    """Per-world sums over each world's first episode; later episodes are masked out."""

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
        self.episode = np.zeros(n, dtype=np.int64)

    def restart(self, i: int) -> None:
        """Start counting world ``i``'s next episode (``evaluate_vector_env``)."""
        for name, value in vars(self).items():
            if isinstance(value, np.ndarray) and name != "episode":
                value[i] = "" if value.dtype == object else 0
        self.episode[i] += 1

    def add(self, reward: np.ndarray, terminated: np.ndarray, truncated: np.ndarray,
            info: dict[str, Any]) -> None:
        # ``info`` describes the step just taken, before a finished world was reset.
        run = ~self.done
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

    def records(self, seeds: list[int]) -> list[dict[str, Any]]:
        steps = np.maximum(self.steps, 1)
        completed = self.outcome == "route_completed"
        progress = np.where(completed, 1.0, self.route_progress)
        return [{
            "seed": int(seeds[i]),
            "outcome": str(self.outcome[i]),
            "route_progress": float(progress[i]),
            "distance_m": float(self.distance[i]),
            "collisions": int(self.collision[i]),
            "off_road": bool(self.off_road[i]),
            "lane_invasions": int(self.lane_invasions[i]),
            "mean_speed_mps": float(self.speed[i] / steps[i]),
            "mean_abs_jerk": float(self.abs_jerk[i] / steps[i]),
            "return": float(self.ret[i]),
            "steps": int(self.steps[i]),
        } for i in range(len(seeds))]


def _run(envs: EmbeddedVectorEnv,
         policy: BatchPolicy,
         seeds: list[int],
         frames: list[np.ndarray] | None = None) -> list[dict[str, Any]]:
    """Play each world's first episode under ``policy``; ``frames`` collects world 0's."""
    obs, _ = envs.reset(seed=seeds)
    tally = _Episodes(envs.num_envs)
    if frames is not None:
        frames.append(_frame(envs))
    # Every world's first episode ends (truncated at the latest) within max_episode_steps.
    for _ in range(envs.config.max_episode_steps):
        obs, reward, terminated, truncated, info = envs.step(policy(obs, envs))
        tally.add(reward, terminated, truncated, info)
        if tally.done.all():
            break
        if frames is not None:
            # After the last step the world has already been reset: that frame is not kept.
            frames.append(_frame(envs))
    assert tally.done.all(), "every episode ends within max_episode_steps"
    return tally.records(seeds)


def _frame(envs: EmbeddedVectorEnv) -> np.ndarray:
    frames = envs.render()
    assert frames is not None, "the env needs render_mode='rgb_array'"
    return frames[0]


def record_video(sim: SimulatorConfig,
                 policy: BatchPolicy,
                 seed: int,
                 path: str | Path,
                 fps: int | None = None) -> dict[str, Any]:
    """Replay the episode of env seed ``seed`` alone, save it as GIF/MP4, return its record."""
    envs = EmbeddedVectorEnv(1, sim, render_mode="rgb_array")
    frames: list[np.ndarray] = []
    record = _run(envs, policy, [seed], frames)[0]
    write_video(frames, path, fps=fps or sim.fps)
    return record


def evaluate_closed_loop(sim: SimulatorConfig,
                         policy: BatchPolicy,
                         episodes: int = 100,
                         seed: int = 1_000_000,
                         video_path: str | Path | None = None,
                         name: str | None = None) -> dict[str, Any]:
    """Drive ``policy`` for one episode on each env seed ``seed .. seed + episodes - 1``.

    Returns the summary (see ``table_row`` for its columns) with every episode's record in
    ``per_episode``; with ``video_path`` also the first seed's episode as a video.
    """
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    if sim.backend != "embedded":
        raise ValueError(f"closed-loop evaluation runs on the embedded backend, got backend "
                         f"{sim.backend!r}")
    seeds = [seed + i for i in range(episodes)]
    per_episode = _run(EmbeddedVectorEnv(episodes, sim), policy, seeds)
    summary = _summarize(name or str(getattr(policy, "__name__", "policy")), per_episode)
    if video_path is not None:
        video = record_video(sim, policy, seed, video_path)
        summary["video"] = {
            "path": str(video_path),
            "seed": seed,
            "steps": video["steps"],
            "outcome": video["outcome"]
        }
    summary["per_episode"] = per_episode
    return summary


def evaluate_vector_env(envs: Any,
                        act: Callable[[dict[str, np.ndarray]], np.ndarray],
                        episodes: int,
                        seed: int,
                        name: str = "policy") -> dict[str, Any]:
    """``episodes`` episodes of ``act`` on any same-step-autoreset driving vector env.

    This is the path for CARLA servers (``carla_env.envs.make_vector_env`` with
    ``backend: carla``), where one world per episode is not affordable: each env plays
    episodes one after another until ``episodes`` have ended; env ``i`` starts from env seed
    ``seed + i`` (an episode's record holds that seed and ``episode_of_env``). The metrics
    are those of ``evaluate_closed_loop``, from the same ``info`` keys of the driving contract.
    """
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    n = envs.num_envs
    obs, _ = envs.reset(seed=[seed + i for i in range(n)])
    tally = _Episodes(n)
    starts = [seed + i for i in range(n)]
    per_episode: list[dict[str, Any]] = []
    while len(per_episode) < episodes:
        obs, reward, terminated, truncated, info = envs.step(act(obs))
        tally.add(reward, terminated, truncated, info)
        for i in np.flatnonzero(tally.done).tolist():
            if len(per_episode) < episodes:
                record = tally.records(starts)[i]
                record["episode_of_env"] = int(tally.episode[i])
                per_episode.append(record)
            tally.restart(i)
    summary = _summarize(name, per_episode)
    summary["per_episode"] = per_episode
    return summary


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


def table_row(summary: dict[str, Any]) -> dict[str, Any]:
    """A summary without its per-episode records and video: one row of the results table."""
    return {k: v for k, v in summary.items() if k not in ("per_episode", "video")}


def evaluate_policies(sim: SimulatorConfig,
                      policies: dict[str, BatchPolicy],
                      episodes: int = 100,
                      seed: int = 1_000_000,
                      out_dir: str | Path | None = None,
                      video_policy: str | None = None,
                      video_format: str = "gif") -> list[dict[str, Any]]:
    """Evaluate every policy on the same seeds; write ``eval.json`` and the episode video.

    ``out_dir`` gets ``eval.json`` (all summaries, per-episode records included) and
    ``episode.<video_format>`` of ``video_policy``. Returns the table rows.
    """
    if not policies:
        raise ValueError("no policies to evaluate")
    if video_policy is not None:
        if video_policy not in policies:
            raise ValueError(f"video_policy {video_policy!r} is not one of {list(policies)}")
        if out_dir is None:
            raise ValueError("video_policy needs an out_dir to write the video to")
    if video_format not in ("gif", "mp4"):
        raise ValueError(f"video_format must be gif or mp4, got {video_format!r}")
    out = Path(out_dir) if out_dir is not None else None
    summaries, seconds = [], {}
    for name, policy in policies.items():
        video = out / f"episode.{video_format}" if out and name == video_policy else None
        start = time.perf_counter()
        summaries.append(evaluate_closed_loop(sim, policy, episodes, seed, video, name=name))
        seconds[name] = time.perf_counter() - start
    if out is not None:
        report = {
            "format": "trainyard-closed-loop/1",
            "episodes": episodes,
            "env_seeds": [seed, seed + episodes - 1],
            "simulator": dataclasses.asdict(sim),
            "wall_seconds": seconds,
            "policies": summaries,
        }
        atomic_write_text(out / "eval.json", json.dumps(report, indent=2) + "\n")
    return [table_row(s) for s in summaries]
