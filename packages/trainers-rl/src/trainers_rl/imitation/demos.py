"""Expert demonstrations from the embedded simulator's autopilot, as a dataset on disk.

A dataset is a directory: ``meta.json`` (what was recorded, with which settings) and
``data.npz`` (one array per observation key, plus ``actions`` and ``waypoints``: the ego's
next ``trajectory_length`` positions, ``stride`` steps apart, in the ego frame at each step).
Both files are written atomically, ``meta.json`` last, so a dataset with ``meta.json`` is
complete.
"""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path
from typing import Any, cast

import numpy as np

from carla_env import SimulatorConfig
from carla_env.embedded import EmbeddedVectorEnv
from trainyard_core.io import atomic_write_bytes, atomic_write_text

__all__ = ["DemoConfig", "load_demos", "record_demos"]


@dataclasses.dataclass
class DemoConfig:
    """How many autopilot episodes to record, and what a sample holds."""

    episodes: int = 64
    num_envs: int = 32
    trajectory_length: int = 10
    stride: int = 5  # steps between waypoints (0.5 s at control_dt 0.1)
    action_noise: float = dataclasses.field(
        default=0.0,
        metadata={
            "help": "std of the noise added to the steer and throttle the car executes "
                    "(the label stays the expert's clean action: DART)"
        })
    noise_correlation: float = dataclasses.field(
        default=0.9, metadata={"help": "AR(1) coefficient of that noise, per control step"})
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("episodes", "num_envs", "trajectory_length", "stride"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.action_noise < 0 or not 0 <= self.noise_correlation < 1:
            raise ValueError(f"action_noise must be >= 0 and noise_correlation in [0, 1), got "
                             f"{self.action_noise} and {self.noise_correlation}")


def _waypoints(xs: np.ndarray, ys: np.ndarray, yaws: np.ndarray, horizon: int,
               stride: int) -> np.ndarray:
    """(T - horizon*stride, horizon, 2) future positions in each step's ego frame (+y left)."""
    usable = len(xs) - horizon * stride
    t = np.arange(usable)[:, None]
    future = t + stride * np.arange(1, horizon + 1)[None, :]
    dx, dy = xs[future] - xs[t], ys[future] - ys[t]
    cos, sin = np.cos(yaws[t]), np.sin(yaws[t])
    return np.stack([cos * dx + sin * dy, -sin * dx + cos * dy], axis=-1).astype(np.float32)


def record_demos(sim: SimulatorConfig, cfg: DemoConfig, out_dir: str | Path) -> Path:
    """Drive the autopilot for ``cfg.episodes`` episodes and save every usable step."""
    out = Path(out_dir)
    if (out / "meta.json").exists():
        raise FileExistsError(f"{out} already holds a dataset (meta.json)")
    envs = EmbeddedVectorEnv(min(cfg.num_envs, cfg.episodes), sim)
    obs, _ = envs.reset(seed=cfg.seed)
    n = envs.num_envs
    keys = list(sim.observation_keys)
    current: list[dict[str, list[Any]]] = [_empty(keys) for _ in range(n)]
    samples: dict[str, list[np.ndarray]] = {k: [] for k in [*keys, "actions", "waypoints"]}
    finished = outcomes = 0
    rng = np.random.default_rng(cfg.seed)
    noise = np.zeros((n, 3), np.float32)
    low, high = envs.single_action_space.low, envs.single_action_space.high
    while finished < cfg.episodes:
        actions = envs.autopilot()
        world = envs.world
        for i in range(n):
            episode = current[i]
            for key in keys:
                episode[key].append(obs[key][i])
            episode["actions"].append(actions[i])
            episode["pose"].append((world.x[i], world.y[i], world.yaw[i]))
        if cfg.action_noise > 0:
            # Perturb what is executed, not the label, so the data shows recoveries.
            rho = cfg.noise_correlation
            noise = rho * noise + np.sqrt(1 - rho**2) * cfg.action_noise * rng.standard_normal(
                (n, 3)).astype(np.float32)
            noise[:, 2] = 0.0
            executed = np.clip(actions + noise, low, high)
        else:
            executed = actions
        obs, _, terminated, truncated, info = envs.step(executed)
        for done in np.flatnonzero(terminated | truncated).tolist():
            if finished < cfg.episodes:
                outcomes += int(info["route_completed"][done])
                _flush(current[done], samples, keys, cfg)
                finished += 1
            current[done] = _empty(keys)
            noise[done] = 0.0
    arrays = {k: np.concatenate(v) for k, v in samples.items() if v}
    if not arrays:
        raise RuntimeError("no episode was long enough to give a waypoint target; lower "
                           "trajectory_length or stride")
    buffer = io.BytesIO()
    np.savez(buffer, allow_pickle=False, **cast(dict[str, Any], arrays))
    atomic_write_bytes(out / "data.npz", buffer.getvalue())
    meta = {
        "format": "trainyard-demos/1",
        "samples": len(arrays["actions"]),
        "episodes": cfg.episodes,
        "route_completed": outcomes / cfg.episodes,
        "observation_keys": keys,
        "demo": dataclasses.asdict(cfg),
        "simulator": dataclasses.asdict(sim),
    }
    atomic_write_text(out / "meta.json", json.dumps(meta, indent=2) + "\n")
    return out


def _empty(keys: list[str]) -> dict[str, list[Any]]:
    return {k: [] for k in [*keys, "actions", "pose"]}


def _flush(episode: dict[str, list[Any]], samples: dict[str, list[np.ndarray]], keys: list[str],
           cfg: DemoConfig) -> None:
    pose = np.array(episode["pose"], dtype=np.float64)
    if len(pose) <= cfg.trajectory_length * cfg.stride:
        return
    waypoints = _waypoints(pose[:, 0], pose[:, 1], pose[:, 2], cfg.trajectory_length, cfg.stride)
    usable = len(waypoints)
    for key in keys:
        samples[key].append(np.stack(episode[key][:usable]))
    samples["actions"].append(np.stack(episode["actions"][:usable]).astype(np.float32))
    samples["waypoints"].append(waypoints)


def load_demos(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The arrays and metadata of a recorded dataset; errors name what is wrong."""
    path = Path(path)
    meta_file = path / "meta.json"
    if not meta_file.is_file():
        raise FileNotFoundError(f"{path} is not a demonstration dataset (no meta.json); record "
                                "one with `trainers-rl record-demos`")
    meta = json.loads(meta_file.read_text())
    if meta.get("format") != "trainyard-demos/1":
        raise ValueError(f"{meta_file}: unknown format {meta.get('format')!r}")
    with np.load(path / "data.npz") as data:
        arrays = {k: data[k] for k in data.files}
    return arrays, meta
