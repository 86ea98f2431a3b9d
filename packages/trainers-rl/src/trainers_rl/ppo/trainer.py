"""``PPOTrainer``: stable-baselines3 PPO over a batch of Gymnasium environments."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecEnv

from trainers_rl.envs import require_registered
from trainers_rl.ppo.config import PPOConfig
from trainyard_core.io import atomic_write_bytes

__all__ = ["PPOTrainer"]


class PPOTrainer:
    """Train a PPO policy; SB3 does the algorithm, this class the wiring and bookkeeping.

    ``env`` may be a ready ``VecEnv``; otherwise ``config.num_envs`` copies of
    ``config.env_id`` are stepped in-process (``DummyVecEnv``), which beats subprocesses for
    cheap environments on few cores.
    """

    def __init__(self,
                 config: PPOConfig,
                 env: VecEnv | None = None,
                 monitor_dir: Path | None = None) -> None:
        if env is None:
            require_registered(config.env_id)
        self.config = config
        self.env = env if env is not None else make_vec_env(
            config.env_id,
            n_envs=config.num_envs,
            seed=config.seed,
            monitor_dir=str(monitor_dir) if monitor_dir else None)
        policy = "MultiInputPolicy" if isinstance(self.env.observation_space,
                                                  spaces.Dict) else "MlpPolicy"
        self.model = PPO(policy,
                         self.env,
                         learning_rate=config.learning_rate,
                         n_steps=config.num_steps,
                         batch_size=config.batch_size,
                         n_epochs=config.num_epochs,
                         gamma=config.gamma,
                         gae_lambda=config.gae_lambda,
                         clip_range=config.clip_epsilon,
                         ent_coef=config.ent_coef,
                         policy_kwargs={"net_arch": list(config.net_arch)},
                         seed=config.seed,
                         device=config.device,
                         verbose=0)
        self.train_seconds = 0.0

    def train(self,
              total_timesteps: int | None = None,
              tensorboard_dir: Path | None = None,
              callback: BaseCallback | None = None,
              progress_bar: bool = True) -> PPO:
        """Run PPO for ``total_timesteps`` (default: the config's); returns the SB3 model."""
        if tensorboard_dir is not None:
            self.model.tensorboard_log = str(tensorboard_dir)
        start = time.perf_counter()
        self.model.learn(total_timesteps=total_timesteps or self.config.total_timesteps,
                         callback=callback,
                         progress_bar=progress_bar,
                         tb_log_name="ppo")
        self.train_seconds = time.perf_counter() - start
        return self.model

    @property
    def steps_per_second(self) -> float:
        """Environment steps per wall-clock second of the last ``train`` call."""
        return self.model.num_timesteps / self.train_seconds if self.train_seconds else 0.0

    def save(self, path: Path) -> Path:
        """Save a resumable SB3 checkpoint (policy, optimiser, hyper-parameters) atomically."""
        buffer = io.BytesIO()
        self.model.save(buffer)
        return atomic_write_bytes(Path(path), buffer.getvalue())

    def predict(self, observation: Any) -> Any:
        """Deterministic action for one observation."""
        return self.model.predict(observation, deterministic=True)[0]
