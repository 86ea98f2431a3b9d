"""The embedded driving simulator trains with stable-baselines3 through SB3VecEnv."""

from __future__ import annotations

import numpy as np
from stable_baselines3.common.vec_env import VecMonitor

from carla_env import SimulatorConfig
from carla_env.embedded import EmbeddedVectorEnv
from trainers_rl.rl.ppo import PPOConfig, PPOTrainer
from trainers_rl.rl.vec_env import SB3VecEnv


def test_terminal_observations_and_truncation_reach_sb3() -> None:
    env = SB3VecEnv(
        EmbeddedVectorEnv(4, SimulatorConfig(observation_keys=["state"], max_episode_steps=5)))
    env.seed(3)
    first = env.reset()
    assert first["state"].shape == (4, 16)
    for _ in range(5):
        env.step_async(np.tile(np.array([0.3, 0.0, 0.0], np.float32), (4, 1)))
        obs, rewards, dones, infos = env.step_wait()
    assert dones.all() and rewards.dtype == np.float32
    assert all(info["TimeLimit.truncated"] for info in infos)
    assert infos[0]["terminal_observation"]["state"].shape == (16,)
    assert np.all(obs["state"][:, 6] < 0.02)  # new episodes started


def test_ppo_learns_to_stay_on_the_road() -> None:
    cfg = SimulatorConfig(observation_keys=["state"], traffic_density=0.0, max_episode_steps=200)
    adapter = SB3VecEnv(EmbeddedVectorEnv(32, cfg))
    trainer = PPOTrainer(PPOConfig(num_envs=32,
                                   n_steps=64,
                                   batch_size=512,
                                   n_epochs=4,
                                   total_timesteps=20_480,
                                   learning_rate=3e-4,
                                   seed=1,
                                   device="cpu"),
                         env=VecMonitor(adapter))
    before_return, before_off_road = _evaluate(trainer, cfg)
    trainer.train(progress_bar=False)
    after_return, after_off_road = _evaluate(trainer, cfg)
    assert after_return > before_return + 15.0, (before_return, after_return)
    assert after_off_road < before_off_road, (before_off_road, after_off_road)
    assert 0 < adapter.sim_seconds < trainer.train_seconds


def _evaluate(trainer: PPOTrainer, cfg: SimulatorConfig) -> tuple[float, float]:
    """Mean return and off-road share over 32 held-out episodes of 200 steps."""
    envs = EmbeddedVectorEnv(32, cfg)
    obs, _ = envs.reset(seed=99)
    returns, off_road = np.zeros(32), np.zeros(32, dtype=bool)
    alive = np.ones(32, dtype=bool)
    for _ in range(cfg.max_episode_steps):
        actions, _ = trainer.model.predict(obs, deterministic=True)
        obs, rewards, terminated, truncated, info = envs.step(actions)
        returns += rewards * alive
        off_road |= info["off_road"] & alive
        alive &= ~(terminated | truncated)
    return float(returns.mean()), float(off_road.mean())
