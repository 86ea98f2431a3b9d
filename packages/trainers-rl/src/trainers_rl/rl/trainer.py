"""``Trainer``: what PPO and SAC share — environments, DrivingVLA as the policy, checkpoints.

stable-baselines3 runs the algorithm; this class decides what it trains on (a batched
``gymnasium`` vector env through ``SB3VecEnv``, any SB3 ``VecEnv``, or copies of a registered
id), what it trains (DrivingVLA, optionally initialised from a checkpoint such as behaviour
cloning's, or SB3's MLP), and how a run survives being killed: resumable checkpoints written
at rollout boundaries (see ``trainers_rl.rl.checkpoint``).
"""

from __future__ import annotations

import abc
import copy
import tempfile
import time
from pathlib import Path
from typing import Any, ClassVar, Self, cast

import gymnasium as gym
import torch
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecMonitor

from driving_vla import DrivingVLA, DrivingVLAConfig
from trainers_rl.rl.callbacks import AtRolloutStart, SaveCheckpoint
from trainers_rl.rl.checkpoint import Checkpoint, StateBundle, open_checkpoint, save_checkpoint
from trainers_rl.rl.config import AlgorithmConfig, BuildOptions, inapplicable_options
from trainers_rl.rl.envs import require_registered
from trainers_rl.rl.policies import (
    DrivingVLAExtractor,
    driving_vla_policy_kwargs,
    load_driving_vla,
    to_driving_vla,
)
from trainers_rl.rl.vec_env import SB3VecEnv
from trainyard_core.cli import progress_enabled
from trainyard_core.config import ConfigError
from trainyard_core.io import atomic_directory, publish

__all__ = ["Trainer", "as_vec_env"]


def as_vec_env(env: VecEnv | gym.vector.VectorEnv | gym.Env | None,
               env_id: str,
               num_envs: int,
               monitor_file: Path | None = None) -> VecEnv:
    """An SB3 ``VecEnv`` with episode statistics (``VecMonitor``) for ``env``.

    ``None`` builds ``num_envs`` copies of ``env_id`` stepped in-process, which beats
    subprocesses for cheap environments on few cores. A single ``gymnasium.Env`` is stepped
    as a vector of one.
    """
    if env is None:
        require_registered(env_id)
        env = DummyVecEnv([lambda: gym.make(env_id)] * num_envs)
    elif isinstance(env, gym.vector.VectorEnv):
        env = SB3VecEnv(env)
    elif isinstance(env, gym.Env):
        single = env  # e.g. seed 001's CARLABridge: one world, stepped in-process
        env = DummyVecEnv([lambda: single])
    elif not isinstance(env, VecEnv):
        raise TypeError(f"env must be a gymnasium Env or VectorEnv, or an SB3 VecEnv, got "
                        f"{type(env).__name__}")
    if isinstance(env, VecMonitor):
        return env
    if monitor_file is not None:
        monitor_file.parent.mkdir(parents=True, exist_ok=True)
    return VecMonitor(env, filename=str(monitor_file) if monitor_file else None)


class Trainer(abc.ABC):
    """Base of ``PPOTrainer`` and ``SACTrainer``; subclasses name the SB3 algorithm.

    ``Trainer(model, env, config)`` (seed 001's order) and ``Trainer(config, env, model)``
    (this package's first order) both work: positional arguments are told apart by type, and
    keywords work as always. The ``model`` passed in is the one trained: after ``train()`` it
    holds the trained weights (they are written back into it at the end of training and at
    every checkpoint), so ``model.save_pretrained(...)`` after ``train()`` saves what was
    learned.

    ``config`` is the algorithm's ``*TrainingConfig`` (hyper-parameters only) or its
    ``*Config``, which adds what to build when no env or model is given (``BuildOptions``);
    a build option set to anything but its default next to a given env or model is refused
    (``ConfigError`` naming it), since it could not apply.
    """

    algorithm: ClassVar[type[Any]]  # an SB3 algorithm class
    config_class: ClassVar[type[AlgorithmConfig]]  # the default config, and resume's
    training_config_class: ClassVar[type[AlgorithmConfig]]  # what every config accepted is
    name: ClassVar[str]
    config: AlgorithmConfig
    target: DrivingVLA | None = None  # the caller's model, updated after training

    def __init__(self,
                 *args: Any,
                 model: DrivingVLA | None = None,
                 env: VecEnv | gym.vector.VectorEnv | gym.Env | None = None,
                 config: AlgorithmConfig | None = None,
                 run_dir: str | Path | None = None,
                 checkpoint: Checkpoint | None = None) -> None:
        """``checkpoint`` (what ``resume`` passes): continue from it, once everything else is
        built; ``config`` must then be the checkpoint's."""
        model, env, config, run_dir = self._sort_arguments(args, model, env, config, run_dir)
        # A resumed trainer is rebuilt from its own config around the saved env and model, so
        # its build options were applied by the run that saved it.
        problems = [] if checkpoint is not None else self._inapplicable_options(
            config, model is not None, env is not None)
        if problems:
            raise ConfigError(f"{type(self).__name__}: " + "; ".join(problems))
        self.config = config
        self.target = model
        self.run_dir = Path(run_dir) if run_dir is not None else None
        start = checkpoint.num_timesteps if checkpoint is not None else 0
        build = self._build_options()
        self.env = as_vec_env(env, build.env_id, config.num_envs, self._monitor_file(start))
        policy_kwargs: dict[str, Any]
        if model is not None or build.policy == "driving_vla":
            # A copy: the caller's model keeps its own config.
            model_config = (copy.deepcopy(model.config)
                            if model is not None else self._default_model_config())
            if config.log_std_init is not None:
                model_config.log_std_init = config.log_std_init
            policy_kwargs = self._driving_vla_policy_kwargs(model_config)
        else:
            policy_kwargs = {"net_arch": list(build.net_arch)}
            if config.log_std_init is not None:
                policy_kwargs["log_std_init"] = config.log_std_init
        self.model: BaseAlgorithm = self.algorithm(self._policy_name(),
                                                   self.env,
                                                   learning_rate=config.learning_rate,
                                                   gamma=config.gamma,
                                                   policy_kwargs=policy_kwargs,
                                                   seed=config.seed,
                                                   device=config.device,
                                                   verbose=0,
                                                   **self._algorithm_kwargs())
        if model is not None:
            self._load_driving_vla(model)
        self.train_seconds = 0.0
        if checkpoint is not None:
            checkpoint.restore(self._state_bundle())  # last: it restores the random states
        self._start_timesteps = int(self.model.num_timesteps)

    @classmethod
    def _sort_arguments(
        cls, args: tuple[Any, ...], model: DrivingVLA | None, env: Any,
        config: AlgorithmConfig | None, run_dir: str | Path | None
    ) -> tuple[DrivingVLA | None, Any, AlgorithmConfig, str | Path | None]:
        """Positional arguments given to their parameter by type: a config, a DrivingVLA, a
        path (the run directory), else the environment. Each parameter at most once."""
        given: dict[str, Any] = {"model": model, "env": env, "config": config, "run_dir": run_dir}
        if len(args) > 4:
            raise TypeError(f"{cls.__name__} takes at most 4 positional arguments (model, env, "
                            f"config, run_dir), got {len(args)}")
        for arg in args:
            if arg is None:
                continue
            if isinstance(arg, AlgorithmConfig):
                name = "config"
            elif isinstance(arg, DrivingVLA):
                name = "model"
            elif isinstance(arg, str | Path):
                name = "run_dir"
            else:
                name = "env"
            if given[name] is not None:
                raise TypeError(f"{cls.__name__} got two values for {name} (a positional "
                                f"{type(arg).__name__} and another)")
            given[name] = arg
        if given["model"] is not None and not isinstance(given["model"], DrivingVLA):
            raise TypeError(f"{cls.__name__}: model must be a DrivingVLA, got "
                            f"{type(given['model']).__name__}")
        if given["config"] is None:
            given["config"] = cls.config_class()
        if not isinstance(given["config"], cls.training_config_class):
            raise TypeError(f"{cls.__name__}: config must be a {cls.config_class.__name__} or "
                            f"{cls.training_config_class.__name__}, got "
                            f"{type(given['config']).__name__}")
        return given["model"], given["env"], given["config"], given["run_dir"]

    # ------------------------------------------------------- for subclasses
    @abc.abstractmethod
    def _algorithm_kwargs(self) -> dict[str, Any]:
        """The algorithm's own hyper-parameters, in SB3's names."""

    def _inapplicable_options(self, config: AlgorithmConfig, model_given: bool,
                              env_given: bool) -> list[str]:
        """Why settings of ``config`` cannot apply with what was given (empty: all apply)."""
        return inapplicable_options(config, model_given, env_given)

    def _extra_callbacks(self) -> list[BaseCallback]:
        """Callbacks the algorithm itself needs (e.g. PPO's value warm-up)."""
        return []

    def _driving_vla_policy_kwargs(self, config: DrivingVLAConfig) -> dict[str, Any]:
        return driving_vla_policy_kwargs(config)

    def _load_driving_vla(self, model: DrivingVLA) -> None:
        load_driving_vla(cast(ActorCriticPolicy, self.model.policy),
                         model,
                         keep_log_std=self.config.log_std_init is None)

    def _export_driving_vla(self) -> DrivingVLA:
        return to_driving_vla(cast(ActorCriticPolicy, self.model.policy))

    # ------------------------------------------------------------- helpers
    def _build_options(self) -> BuildOptions:
        """The config's build options; a training-only config builds with the defaults."""
        if isinstance(self.config, BuildOptions):
            return self.config
        return cast(BuildOptions, self.config_class())

    def _policy_name(self) -> str:
        dict_obs = isinstance(self.env.observation_space, spaces.Dict)
        return "MultiInputPolicy" if dict_obs else "MlpPolicy"

    def _default_model_config(self) -> DrivingVLAConfig:
        space = self.env.observation_space
        if not isinstance(space, spaces.Dict):
            raise ValueError(f"policy driving_vla needs a driving env's Dict observations, got "
                             f"{space}")
        keys = [k for k in ("camera", "state", "neighbors") if k in space.spaces]
        return DrivingVLAConfig(observation_keys=keys,
                                hidden_size=self._build_options().hidden_size)

    def _monitor_file(self, step: int) -> Path | None:
        return self.run_dir / "monitor" / f"from_step_{step}" if self.run_dir else None

    @property
    def uses_driving_vla(self) -> bool:
        extractor = getattr(self.model.policy, "features_extractor", None)
        actor = getattr(self.model.policy, "actor", None)
        return isinstance(extractor, DrivingVLAExtractor) or isinstance(
            getattr(actor, "features_extractor", None), DrivingVLAExtractor)

    # ------------------------------------------------------------ training
    def train(self,
              total_timesteps: int | None = None,
              callback: BaseCallback | list[BaseCallback] | None = None,
              tensorboard_dir: Path | None = None,
              progress_bar: bool = True,
              save_dir: str | Path | None = None) -> BaseAlgorithm:
        """Train until ``total_timesteps`` env steps in all (default: the config's).

        A resumed trainer continues from its checkpoint's step count to the same total.
        Checkpoints are written every ``config.checkpoint_every`` steps when the trainer has a
        run directory. The model passed to the trainer holds the trained weights afterwards
        (also when training stops with an exception); ``save_dir`` also saves it there as a
        DrivingVLA checkpoint (``DrivingVLA.from_pretrained(save_dir)``), as seed 001 does.
        SB3's progress bar is drawn when ``progress_bar`` and the log level shows progress
        (``--quiet`` hides it).
        """
        if save_dir is not None and not self.uses_driving_vla:
            raise TypeError("train(save_dir=...) saves a DrivingVLA, but this trainer's policy "
                            "is SB3's MLP (set policy: driving_vla or pass a model)")
        total = total_timesteps or self.config.total_timesteps
        callbacks = list(callback) if isinstance(callback, list) else [callback] if callback else []
        callbacks += self._extra_callbacks()
        if self.run_dir is not None:
            save = SaveCheckpoint(self.save_checkpoint, self.run_dir / "checkpoints",
                                  self.config.keep_checkpoints)
            callbacks.append(AtRolloutStart(self.config.checkpoint_every, save))
        if tensorboard_dir is not None:
            self.model.tensorboard_log = str(tensorboard_dir)
        remaining = total - self.model.num_timesteps
        self._start_timesteps = self.model.num_timesteps
        start = time.perf_counter()
        try:
            if remaining > 0:
                self.model.learn(total_timesteps=remaining,
                                 callback=CallbackList(callbacks),
                                 progress_bar=progress_bar and progress_enabled(),
                                 tb_log_name=self.name,
                                 reset_num_timesteps=self.model.num_timesteps == 0)
        finally:
            self.train_seconds = time.perf_counter() - start
            self.sync_model()
        if save_dir is not None:
            self.save_into(save_dir)
        return self.model

    def sync_model(self) -> DrivingVLA | None:
        """Copy the trained policy's weights into the model the caller passed in.

        SB3 builds its policy around its own DrivingVLA (the caller's is copied in at the
        start); without this the caller's object would stay untrained, and its
        ``save_pretrained`` would silently write the initial weights.
        """
        target = self.target
        if target is None or not self.uses_driving_vla:
            return target
        trained = self.driving_vla()
        with torch.no_grad():
            target.load_state_dict(trained.state_dict())
        # e.g. SAC reads the control head through tanh: the weights mean that only with it.
        target.config.control_activation = trained.config.control_activation
        return target

    @property
    def steps_per_second(self) -> float:
        """Environment steps per wall-clock second of the last ``train`` call."""
        done = self.model.num_timesteps - self._start_timesteps
        return done / self.train_seconds if self.train_seconds else 0.0

    def predict(self, observation: Any) -> Any:
        """Deterministic action for one observation (or a batch)."""
        return self.model.predict(observation, deterministic=True)[0]

    # ----------------------------------------------------------- artefacts
    def driving_vla(self) -> DrivingVLA:
        """The trained policy as a DrivingVLA (shares weights with the SB3 policy)."""
        if not self.uses_driving_vla:
            raise TypeError("this trainer's policy is SB3's MLP, not DrivingVLA "
                            "(set policy: driving_vla or pass a model)")
        return self._export_driving_vla()

    def save_pretrained(self, path: str | Path) -> Path:
        """Save the trained policy as a DrivingVLA checkpoint (config.json + safetensors)."""
        path = Path(path)
        with atomic_directory(path, overwrite=True) as tmp:
            self.driving_vla().save_pretrained(tmp)
        return path

    def save_into(self, directory: str | Path) -> Path:
        """Save the trained DrivingVLA into ``directory``, keeping what else it holds.

        Seed 001 passes its output directory (created beforehand, maybe holding logs), so
        unlike ``save_pretrained`` this does not replace the directory: each file is written
        beside its final name and renamed over it, so a reader never sees half a file.
        """
        directory = Path(directory)
        if directory.exists() and not directory.is_dir():
            raise NotADirectoryError(f"save_dir {str(directory)!r} is a file, expected a "
                                     f"directory")
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".driving_vla.", dir=directory) as tmp:
            self.driving_vla().save_pretrained(tmp)
            for file in sorted(Path(tmp).iterdir()):
                publish(file, directory / file.name)
        return directory

    def _state_bundle(self) -> StateBundle:
        return StateBundle(algorithm=self.name,
                           model=self.model,
                           env=self.env,
                           config=self.config,
                           driving_vla=self.driving_vla() if self.uses_driving_vla else None)

    def save_checkpoint(self, path: str | Path) -> Path:
        """A resumable trainer state (see ``trainers_rl.rl.checkpoint``); the caller's model is
        brought up to date too, so it is never older than the last checkpoint."""
        saved = save_checkpoint(Path(path), self._state_bundle())
        self.sync_model()
        return saved

    @classmethod
    def resume(cls,
               checkpoint: str | Path,
               env: VecEnv | gym.vector.VectorEnv | None = None,
               run_dir: str | Path | None = None,
               model: DrivingVLA | None = None) -> Self:
        """A trainer restored from ``checkpoint`` (a step directory, or a run's latest).

        The trainer is built by ``__init__`` from the checkpoint's config, on ``env`` (else the
        saved one) with the saved env state, around ``model`` (else the saved DrivingVLA, which
        has the policy's architecture), and then given the saved training state. ``model``, if
        given, is the one updated with the trained weights, as in ``__init__``.
        """
        opened = open_checkpoint(Path(checkpoint), cls.name)
        try:
            config = cls.config_class(**opened.config)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"resume: {opened.path / 'state.json'} holds a config this version "
                              f"cannot read: {exc}") from exc
        return cls(config,
                   env=opened.restore_env(env),
                   model=model if model is not None else opened.driving_vla(),
                   run_dir=run_dir,
                   checkpoint=opened)
