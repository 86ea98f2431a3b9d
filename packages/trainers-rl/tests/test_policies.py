"""PPO trains DrivingVLA; the saved checkpoint reproduces the trained policy's actions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from stable_baselines3 import PPO

from carla_env import SimulatorConfig
from carla_env.embedded import EmbeddedVectorEnv
from driving_vla import DrivingVLA, DrivingVLAConfig
from trainers_rl.rl.policies import driving_vla_policy_kwargs, to_driving_vla
from trainers_rl.rl.vec_env import SB3VecEnv


@pytest.mark.parametrize("keys", [["state", "neighbors"], ["camera", "state"]])
def test_ppo_trained_driving_vla_round_trips(tmp_path: Path, keys: list[str]) -> None:
    sim = SimulatorConfig(observation_keys=keys, max_episode_steps=50)
    env = SB3VecEnv(EmbeddedVectorEnv(4, sim))
    config = DrivingVLAConfig(observation_keys=keys, hidden_size=64)
    ppo = PPO("MultiInputPolicy",
              env,
              n_steps=32,
              batch_size=64,
              n_epochs=2,
              seed=0,
              device="cpu",
              policy_kwargs=driving_vla_policy_kwargs(config))
    ppo.learn(total_timesteps=256)
    to_driving_vla(ppo.policy).save_pretrained(tmp_path)
    loaded = DrivingVLA.from_pretrained(tmp_path)

    envs = EmbeddedVectorEnv(6, sim)
    obs, _ = envs.reset(seed=5)
    for _ in range(10):
        expected, _ = ppo.predict(obs, deterministic=True)
        np.testing.assert_allclose(loaded.act(obs).numpy(), expected, rtol=1e-5, atol=1e-6)
        obs, *_ = envs.step(expected)


def test_missing_observation_in_env_is_named() -> None:
    env = SB3VecEnv(EmbeddedVectorEnv(2, SimulatorConfig(observation_keys=["state"])))
    config = DrivingVLAConfig(observation_keys=["state", "neighbors"])
    with pytest.raises(ValueError, match=r"also needs \['neighbors'\]"):
        PPO("MultiInputPolicy", env, policy_kwargs=driving_vla_policy_kwargs(config))
