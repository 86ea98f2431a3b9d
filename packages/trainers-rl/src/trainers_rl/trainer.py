"""``Trainer``: what PPO and SAC share — environments, DrivingVLA as the policy, checkpoints.

stable-baselines3 runs the algorithm; this class decides what it trains on (a batched
``gymnasium`` vector env through ``SB3VecEnv``, any SB3 ``VecEnv``, or copies of a registered
id), what it trains (DrivingVLA, optionally initialised from a checkpoint such as behaviour
cloning's, or SB3's MLP), and how a run survives being killed: resumable checkpoints written
at rollout boundaries (see ``trainers_rl.checkpoint``).
"""

from __future__ import annotations

import abc
import copy
import time
from pathlib import Path
from typing import Any, ClassVar, cast

import gymnasium as gym
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecMonitor

from driving_vla import DrivingVLA, DrivingVLAConfig
from trainers_rl.algorithm_config import AlgorithmConfig
from trainers_rl.envs import require_registered
from trainers_rl.vec_env import SB3VecEnv

__all__ = ["Trainer", "as_vec_env"]


def as_vec_env(env: VecEnv | gym.vector.VectorEnv | None,
               config: AlgorithmConfig,
               monitor_file: Path | None = None) -> VecEnv:
    """An SB3 ``VecEnv`` with episode statistics (``VecMonitor``) for ``env``.

    ``None`` builds ``config.num_envs`` copies of ``config.env_id`` stepped in-process, which
    beats subprocesses for cheap environments on few cores.
    """
    if env is None:
        require_registered(config.env_id)
        env = DummyVecEnv([lambda: gym.make(config.env_id)] * config.num_envs)
    elif isinstance(env, gym.vector.VectorEnv):
        env = SB3VecEnv(env)
    elif not isinstance(env, VecEnv):
        raise TypeError(f"env must be a gymnasium VectorEnv or an SB3 VecEnv, got "
                        f"{type(env).__name__}")
    if isinstance(env, VecMonitor):
        return env
    if monitor_file is not None:
        monitor_file.parent.mkdir(parents=True, exist_ok=True)
    return VecMonitor(env, filename=str(monitor_file) if monitor_file else None)


class Trainer(abc.ABC):
    """Base of ``PPOTrainer`` and ``SACTrainer``; subclasses name the SB3 algorithm."""

    algorithm: ClassVar[type[Any]]  # an SB3 algorithm class
    config_class: ClassVar[type[AlgorithmConfig]]
    name: ClassVar[str]
    config: AlgorithmConfig

    def __init__(self,
                 config: AlgorithmConfig,
                 env: VecEnv | gym.vector.VectorEnv | None = None,
                 model: DrivingVLA | None = None,
                 run_dir: str | Path | None = None) -> None:
        self.config = config
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.env = as_vec_env(env, config, self._monitor_file(0))
        policy_kwargs: dict[str, Any]
        if model is not None or config.policy == "driving_vla":
            # A copy: the caller's model keeps its own config.
            model_config = (copy.deepcopy(model.config)
                            if model is not None else self._default_model_config())
            if config.log_std_init is not None:
                model_config.log_std_init = config.log_std_init
            policy_kwargs = self._driving_vla_policy_kwargs(model_config)
        else:
            policy_kwargs = {"net_arch": list(config.net_arch)}
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
        self._start_timesteps = 0

    # ------------------------------------------------------- for subclasses
    @abc.abstractmethod
    def _algorithm_kwargs(self) -> dict[str, Any]:
        """The algorithm's own hyper-parameters, in SB3's names."""

    def _extra_callbacks(self) -> list[BaseCallback]:
        """Callbacks the algorithm itself needs (e.g. PPO's value warm-up)."""
        return []

    def _driving_vla_policy_kwargs(self, config: DrivingVLAConfig) -> dict[str, Any]:
        from trainers_rl.policies import driving_vla_policy_kwargs

        return driving_vla_policy_kwargs(config)

    def _load_driving_vla(self, model: DrivingVLA) -> None:
        from trainers_rl.policies import load_driving_vla

        load_driving_vla(cast(ActorCriticPolicy, self.model.policy),
                         model,
                         keep_log_std=self.config.log_std_init is None)

    def _export_driving_vla(self) -> DrivingVLA:
        from trainers_rl.policies import to_driving_vla

        return to_driving_vla(cast(ActorCriticPolicy, self.model.policy))

    # ------------------------------------------------------------- helpers
    def _policy_name(self) -> str:
        dict_obs = isinstance(self.env.observation_space, spaces.Dict)
        return "MultiInputPolicy" if dict_obs else "MlpPolicy"

    def _default_model_config(self) -> DrivingVLAConfig:
        space = self.env.observation_space
        if not isinstance(space, spaces.Dict):
            raise ValueError(f"policy driving_vla needs a driving env's Dict observations, got "
                             f"{space}")
        keys = [k for k in ("camera", "state", "neighbors") if k in space.spaces]
        return DrivingVLAConfig(observation_keys=keys, hidden_size=self.config.hidden_size)

    def _monitor_file(self, step: int) -> Path | None:
        return self.run_dir / "monitor" / f"from_step_{step}" if self.run_dir else None

    @property
    def uses_driving_vla(self) -> bool:
        from trainers_rl.policies import DrivingVLAExtractor

        extractor = getattr(self.model.policy, "features_extractor", None)
        actor = getattr(self.model.policy, "actor", None)
        return isinstance(extractor, DrivingVLAExtractor) or isinstance(
            getattr(actor, "features_extractor", None), DrivingVLAExtractor)

    # ------------------------------------------------------------ training
    def train(self,
              total_timesteps: int | None = None,
              callback: BaseCallback | list[BaseCallback] | None = None,
              tensorboard_dir: Path | None = None,
              progress_bar: bool = True) -> BaseAlgorithm:
        """Train until ``total_timesteps`` env steps in all (default: the config's).

        A resumed trainer continues from its checkpoint's step count to the same total.
        Checkpoints are written every ``config.checkpoint_every`` steps when the trainer has a
        run directory.
        """
        total = total_timesteps or self.config.total_timesteps
        callbacks = list(callback) if isinstance(callback, list) else [callback] if callback else []
        callbacks += self._extra_callbacks()
        if self.run_dir is not None:
            from trainers_rl.callbacks import CheckpointCallback

            callbacks.append(
                CheckpointCallback(self, self.run_dir / "checkpoints", self.config.checkpoint_every,
                                   self.config.keep_checkpoints))
        if tensorboard_dir is not None:
            self.model.tensorboard_log = str(tensorboard_dir)
        remaining = total - self.model.num_timesteps
        self._start_timesteps = self.model.num_timesteps
        start = time.perf_counter()
        if remaining > 0:
            self.model.learn(total_timesteps=remaining,
                             callback=CallbackList(callbacks),
                             progress_bar=progress_bar,
                             tb_log_name=self.name,
                             reset_num_timesteps=self.model.num_timesteps == 0)
        self.train_seconds = time.perf_counter() - start
        return self.model

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
        from trainyard_core.io import atomic_directory

        path = Path(path)
        with atomic_directory(path, overwrite=True) as tmp:
            self.driving_vla().save_pretrained(tmp)
        return path

    def save_checkpoint(self, path: str | Path) -> Path:
        """A resumable trainer state (see ``trainers_rl.checkpoint``)."""
        from trainers_rl.checkpoint import save_checkpoint

        return save_checkpoint(self, Path(path))

    @classmethod
    def resume(cls,
               checkpoint: str | Path,
               env: VecEnv | gym.vector.VectorEnv | None = None,
               run_dir: str | Path | None = None) -> Trainer:
        """A trainer restored from ``checkpoint`` (a step directory, or a run's latest)."""
        from trainers_rl.checkpoint import load_checkpoint

        return load_checkpoint(cls, Path(checkpoint), env, run_dir)
