"""Resumable trainer checkpoints: one directory per step, written whole or not at all.

A checkpoint is taken at a rollout boundary (after an update, before the next rollout), so
nothing half-collected is lost. ``checkpoints/step_<N>/`` holds:

- ``trainer.zip``: SB3's own save (policy, optimiser, step counters, last observation);
- ``env.pkl``: the vector env's state, when it can be pickled (the embedded simulator can;
  CARLA servers cannot, and their episodes restart on resume);
- ``rng.pkl``: torch, NumPy, Python and action-space random states, so the resumed run
  draws the same actions and minibatches as the uninterrupted one;
- ``replay_buffer.pkl`` for off-policy algorithms;
- ``model/``: the policy as a DrivingVLA (``from_pretrained``), when it is one;
- ``state.json``: what wrote it, checked before anything is loaded.

With all of them, a resumed run equals the uninterrupted run bit for bit on the same machine
and thread count.
"""

from __future__ import annotations

import dataclasses
import json
import pickle
import random
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper

from trainers_rl.vec_env import SB3VecEnv
from trainyard_core.config import ConfigError
from trainyard_core.io import atomic_directory

if TYPE_CHECKING:
    from trainers_rl.trainer import Trainer

__all__ = ["FORMAT", "find_checkpoint", "load_checkpoint", "save_checkpoint", "step_dir"]

FORMAT = "trainyard-trainer/1"
T = TypeVar("T", bound="Trainer")


def step_dir(root: Path, step: int) -> Path:
    return root / f"step_{step:09d}"


def _batched_env(env: VecEnv) -> SB3VecEnv | None:
    while isinstance(env, VecEnvWrapper):
        env = env.venv
    return env if isinstance(env, SB3VecEnv) else None


def _space(space: gym.Space) -> str:
    return repr(space)


def save_checkpoint(trainer: Trainer, path: Path) -> Path:
    """Write ``trainer``'s resumable state to the directory ``path`` (atomically)."""
    model = trainer.model
    # The DrivingVLA shares weights with the SB3 policy; sync its heads before saving either.
    exported = trainer.driving_vla() if trainer.uses_driving_vla else None
    with atomic_directory(path, overwrite=True) as tmp:
        model.save(tmp / "trainer.zip")
        inner = _batched_env(trainer.env)
        env_state = False
        if inner is not None:
            try:
                blob = pickle.dumps(inner.env)
            except (TypeError, AttributeError, pickle.PicklingError):
                blob = b""  # e.g. subprocess envs: their episodes restart on resume
            if blob:
                (tmp / "env.pkl").write_bytes(blob)
                env_state = True
        if isinstance(model, OffPolicyAlgorithm):
            model.save_replay_buffer(tmp / "replay_buffer.pkl")
        rng = {
            "torch": torch.get_rng_state(),
            "numpy": np.random.get_state(),
            "python": random.getstate(),
            # SAC's warm-up actions come from action_space.sample().
            "action_space": model.action_space.np_random.bit_generator.state,
        }
        (tmp / "rng.pkl").write_bytes(pickle.dumps(rng))
        if exported is not None:
            exported.save_pretrained(tmp / "model")
        state = {
            "format": FORMAT,
            "algorithm": trainer.name,
            "num_timesteps": int(model.num_timesteps),
            "num_envs": int(trainer.env.num_envs),
            "observation_space": _space(trainer.env.observation_space),
            "action_space": _space(trainer.env.action_space),
            "env_state": env_state,
            "config": _jsonable(trainer.config),
        }
        (tmp / "state.json").write_text(json.dumps(state, indent=2) + "\n")
    return path


def _jsonable(config: Any) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(config), default=str))


def find_checkpoint(path: Path) -> Path:
    """``path`` if it is a checkpoint, else the newest one under it (a run directory)."""
    if not path.exists():
        raise ConfigError(f"resume: {str(path)!r} does not exist (expected a checkpoint "
                          "directory step_<N>/ or a run directory with checkpoints/)")
    if (path / "state.json").is_file():
        return path
    for root in (path / "checkpoints", path):
        steps = sorted(p for p in root.glob("step_*") if (p / "state.json").is_file())
        if steps:
            return steps[-1]
    raise ConfigError(f"resume: {str(path)!r} holds no checkpoint (expected "
                      "checkpoints/step_<N>/state.json, written by a run with a run directory)")


def _check_env(path: Path, state: dict[str, Any], env: VecEnv | gym.vector.VectorEnv) -> None:
    if isinstance(env, VecEnv):
        observation, action = env.observation_space, env.action_space
    else:
        observation, action = env.single_observation_space, env.single_action_space
    problems = []
    if env.num_envs != state["num_envs"]:
        problems.append(f"{state['num_envs']} environments, not {env.num_envs}")
    if _space(observation) != state["observation_space"]:
        problems.append(f"observation space {state['observation_space']}, not "
                        f"{_space(observation)}")
    if _space(action) != state["action_space"]:
        problems.append(f"action space {state['action_space']}, not {_space(action)}")
    if problems:
        raise ConfigError(f"resume: {path} is incompatible with this environment: it was "
                          f"trained with {'; '.join(problems)}")


def _read_state(path: Path, algorithm: str) -> dict[str, Any]:
    try:
        state = json.loads((path / "state.json").read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"resume: {path / 'state.json'} is unreadable: {exc}") from exc
    if state.get("format") != FORMAT:
        raise ConfigError(f"resume: {path} has format {state.get('format')!r}, expected "
                          f"{FORMAT!r}")
    if state.get("algorithm") != algorithm:
        raise ConfigError(f"resume: {path} was written by {str(state.get('algorithm')).upper()}, "
                          f"it cannot resume {algorithm.upper()}")
    missing = [n for n in ("trainer.zip", "rng.pkl") if not (path / n).is_file()]
    if missing:
        raise ConfigError(f"resume: {path} is incomplete, missing {', '.join(missing)}")
    return state


def load_checkpoint(cls: type[T], path: Path, env: VecEnv | gym.vector.VectorEnv | None,
                    run_dir: str | Path | None) -> T:
    """Rebuild a ``cls`` trainer from a checkpoint; errors name what does not fit."""
    from trainers_rl.trainer import as_vec_env

    path = find_checkpoint(path)
    state = _read_state(path, cls.name)
    try:
        config = cls.config_class(**state["config"])
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"resume: {path / 'state.json'} holds a config this version cannot "
                          f"read: {exc}") from exc
    if env is not None:
        _check_env(path, state, env)
    if state["env_state"]:
        restored = pickle.loads((path / "env.pkl").read_bytes())
        inner = _batched_env(env) if isinstance(env, VecEnv) else None
        target: Any = inner.env if inner is not None else env
        if target is not None and type(restored) is not type(target):
            raise ConfigError(f"resume: {path} saved a {type(restored).__name__}, the run now "
                              f"steps a {type(target).__name__}")
        saved, now = getattr(restored, "config", None), getattr(target, "config", None)
        if dataclasses.is_dataclass(saved) and dataclasses.is_dataclass(now) and saved != now:
            changed = [
                f.name
                for f in dataclasses.fields(saved)
                if getattr(saved, f.name) != getattr(now, f.name, None)
            ]
            raise ConfigError(f"resume: {path} was trained on another simulator config "
                              f"(changed: {', '.join(changed)})")
        if inner is not None:
            inner.env = restored
        else:
            env = cast(gym.vector.VectorEnv, restored)
    run = Path(run_dir) if run_dir is not None else None
    vec = as_vec_env(env, config,
                     run / "monitor" / f"from_step_{state['num_timesteps']}" if run else None)
    _check_env(path, state, vec)
    model = cls.algorithm.load(path / "trainer.zip",
                               env=vec,
                               device=config.device,
                               force_reset=not state["env_state"])
    if isinstance(model, OffPolicyAlgorithm) and (path / "replay_buffer.pkl").is_file():
        model.load_replay_buffer(path / "replay_buffer.pkl")
    trainer = cls.__new__(cls)
    trainer.config = config
    trainer.run_dir = run
    trainer.env = vec
    trainer.model = model
    trainer.train_seconds = 0.0
    trainer._start_timesteps = int(model.num_timesteps)
    # Last, so nothing above consumes the restored random streams.
    rng = pickle.loads((path / "rng.pkl").read_bytes())
    torch.set_rng_state(rng["torch"])
    np.random.set_state(rng["numpy"])
    random.setstate(rng["python"])
    model.action_space.np_random.bit_generator.state = rng["action_space"]
    return trainer


def prune(root: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` complete checkpoints under ``root``."""
    steps = sorted(p for p in root.glob("step_*") if (p / "state.json").is_file())
    for old in steps[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
