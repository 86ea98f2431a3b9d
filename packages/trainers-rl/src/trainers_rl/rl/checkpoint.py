"""Resumable checkpoints: a state bundle per step, one directory written whole or not at all.

This module saves and restores a *state bundle* (``StateBundle``: an SB3 model, the vector env
it steps, the config it was built from, the DrivingVLA it trains) and never names a trainer:
a trainer builds itself from a checkpoint's config through its own ``__init__`` and then hands
its fresh bundle to ``Checkpoint.restore``, so whatever ``__init__`` sets up is there after a
resume too.

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

With all of them (the random states restored last), a resumed run equals the uninterrupted
run bit for bit on the same machine and thread count.
"""

from __future__ import annotations

import dataclasses
import json
import pickle
import random
import shutil
from pathlib import Path
from typing import Any, cast

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.save_util import load_from_zip_file, recursive_setattr
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper

from driving_vla import DrivingVLA
from trainers_rl.rl.vec_env import SB3VecEnv
from trainyard_core.config import ConfigError
from trainyard_core.io import atomic_directory

__all__ = [
    "FORMAT", "Checkpoint", "StateBundle", "find_checkpoint", "open_checkpoint", "prune",
    "save_checkpoint", "step_dir"
]

FORMAT = "trainyard-trainer/1"

# SB3 attributes a fresh model already has from the config it was built with; the rest of
# what SB3 saves (step counters, schedule progress, last observation, episode statistics) is
# training progress and comes from the checkpoint.
_BUILT_FROM_CONFIG = ("policy_class", "policy_kwargs", "observation_space", "action_space",
                      "n_envs", "device")


@dataclasses.dataclass
class StateBundle:
    """Everything a checkpoint saves or restores, named by what it is, not by who trains it.

    ``env`` is the vector env as built for the model (before SB3's own wrappers), whose spaces
    a checkpoint records; ``algorithm`` names the SB3 algorithm (``"ppo"``, ``"sac"``) so a
    checkpoint is never restored into another.
    """

    algorithm: str
    model: BaseAlgorithm
    env: VecEnv
    config: Any  # the algorithm's config dataclass
    driving_vla: DrivingVLA | None = None  # the policy as a DrivingVLA, when it is one


def step_dir(root: Path, step: int) -> Path:
    return root / f"step_{step:09d}"


def _batched_env(env: VecEnv) -> SB3VecEnv | None:
    while isinstance(env, VecEnvWrapper):
        env = env.venv
    return env if isinstance(env, SB3VecEnv) else None


def _space(space: gym.Space) -> str:
    return repr(space)


def save_checkpoint(path: Path, bundle: StateBundle) -> Path:
    """Write ``bundle`` to the directory ``path`` (atomically)."""
    model = bundle.model
    with atomic_directory(path, overwrite=True) as tmp:
        model.save(tmp / "trainer.zip")
        inner = _batched_env(bundle.env)
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
        if bundle.driving_vla is not None:
            bundle.driving_vla.save_pretrained(tmp / "model")
        state = {
            "format": FORMAT,
            "algorithm": bundle.algorithm,
            "num_timesteps": int(model.num_timesteps),
            "num_envs": int(bundle.env.num_envs),
            "observation_space": _space(bundle.env.observation_space),
            "action_space": _space(bundle.env.action_space),
            "env_state": env_state,
            "config": _jsonable(bundle.config),
        }
        (tmp / "state.json").write_text(json.dumps(state, indent=2) + "\n")
    return path


def _jsonable(config: Any) -> dict[str, Any]:
    return cast(dict[str, Any], json.loads(json.dumps(dataclasses.asdict(config), default=str)))


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


def open_checkpoint(path: Path, algorithm: str) -> Checkpoint:
    """The checkpoint at ``path`` (or the newest under it), checked to be complete and written
    by ``algorithm``; nothing is restored yet."""
    path = find_checkpoint(path)
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
    return Checkpoint(path, state)


@dataclasses.dataclass
class Checkpoint:
    """A checkpoint on disk (``open_checkpoint``): what it records, and how to restore it."""

    path: Path
    state: dict[str, Any]  # state.json

    @property
    def config(self) -> dict[str, Any]:
        """The config the checkpointed model was built with, as saved (plain values)."""
        return cast(dict[str, Any], self.state["config"])

    @property
    def num_timesteps(self) -> int:
        return int(self.state["num_timesteps"])

    def driving_vla(self) -> DrivingVLA | None:
        """The saved policy as a DrivingVLA (its architecture is the policy's), if it is one."""
        model = self.path / "model"
        return DrivingVLA.from_pretrained(model) if (model / "config.json").is_file() else None

    def check_env(self, env: VecEnv | gym.vector.VectorEnv) -> None:
        """Refuse an env whose count or spaces differ from the checkpoint's, naming them."""
        if isinstance(env, VecEnv):
            observation, action = env.observation_space, env.action_space
        else:
            observation, action = env.single_observation_space, env.single_action_space
        state, problems = self.state, []
        if env.num_envs != state["num_envs"]:
            problems.append(f"{state['num_envs']} environments, not {env.num_envs}")
        if _space(observation) != state["observation_space"]:
            problems.append(f"observation space {state['observation_space']}, not "
                            f"{_space(observation)}")
        if _space(action) != state["action_space"]:
            problems.append(f"action space {state['action_space']}, not {_space(action)}")
        if problems:
            raise ConfigError(f"resume: {self.path} is incompatible with this environment: it "
                              f"was trained with {'; '.join(problems)}")

    def restore_env(
            self,
            env: VecEnv | gym.vector.VectorEnv | None) -> VecEnv | gym.vector.VectorEnv | None:
        """``env`` with the saved env state put back (or the saved env itself when ``env`` is
        None); refused if it is another kind of env or simulator config than the saved one."""
        if env is not None:
            self.check_env(env)
        if not self.state["env_state"]:
            return env
        restored = pickle.loads((self.path / "env.pkl").read_bytes())
        inner = _batched_env(env) if isinstance(env, VecEnv) else None
        target: Any = inner.env if inner is not None else env
        if target is not None and type(restored) is not type(target):
            raise ConfigError(f"resume: {self.path} saved a {type(restored).__name__}, the run "
                              f"now steps a {type(target).__name__}")
        saved, now = getattr(restored, "config", None), getattr(target, "config", None)
        if dataclasses.is_dataclass(saved) and dataclasses.is_dataclass(now) and saved != now:
            changed = [
                f.name
                for f in dataclasses.fields(saved)
                if getattr(saved, f.name) != getattr(now, f.name, None)
            ]
            raise ConfigError(f"resume: {self.path} was trained on another simulator config "
                              f"(changed: {', '.join(changed)})")
        if inner is not None:
            inner.env = restored
            return env
        return cast(gym.vector.VectorEnv, restored)

    def restore(self, bundle: StateBundle) -> None:
        """Put the saved training state into ``bundle``, freshly built from ``self.config``:
        SB3's weights, optimisers and progress, the replay buffer, and last the random states,
        so nothing built before consumes the restored streams."""
        self.check_env(bundle.env)
        model = bundle.model
        data, params, variables = load_from_zip_file(self.path / "trainer.zip", device=model.device)
        assert data is not None and params is not None, f"{self.path}: SB3 saved no model"
        for key, value in data.items():
            if key not in _BUILT_FROM_CONFIG:
                setattr(model, key, value)
        if not self.state["env_state"]:
            model._last_obs = None  # episodes restart
        model.set_parameters(params, exact_match=True, device=model.device)
        for name, value in (variables or {}).items():
            if value is not None:  # e.g. SAC's log_ent_coef, absent for a fixed ent_coef
                recursive_setattr(model, f"{name}.data", value.data)
        if isinstance(model, OffPolicyAlgorithm) and (self.path / "replay_buffer.pkl").is_file():
            model.load_replay_buffer(self.path / "replay_buffer.pkl")
        rng = pickle.loads((self.path / "rng.pkl").read_bytes())
        torch.set_rng_state(rng["torch"])
        np.random.set_state(rng["numpy"])
        random.setstate(rng["python"])
        model.action_space.np_random.bit_generator.state = rng["action_space"]


def prune(root: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` complete checkpoints under ``root``."""
    steps = sorted(p for p in root.glob("step_*") if (p / "state.json").is_file())
    for old in steps[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
