"""The embedded backend keeps the Gymnasium contract, deterministically."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from carla_env import ENV_ID, SimulatorConfig
from carla_env.contract import EXPERT_KEY, INFO_KEYS, OBSERVATION_INFO_KEYS, STATE_FEATURES
from carla_env.embedded import EmbeddedDrivingEnv, EmbeddedVectorEnv, world_params
from carla_env.sim.world import World

ALL_KEYS = ["camera", "state", "neighbors"]


@pytest.mark.parametrize("scenario", ["highway", "urban", "night", "rain"])
def test_check_env_passes(scenario: str) -> None:
    env = gym.make(ENV_ID, config=SimulatorConfig(scenario=scenario, observation_keys=ALL_KEYS))
    check_env(env.unwrapped)


def test_ring_map_runs() -> None:
    env = EmbeddedDrivingEnv(SimulatorConfig(map="ring"))
    env.reset(seed=1)
    for _ in range(50):
        _, _, terminated, _, info = env.step(env.autopilot())
        assert not terminated
    assert info["route_progress"] > 0


def _rollout(seed: int, steps: int = 60) -> list[tuple]:
    env = EmbeddedDrivingEnv(SimulatorConfig(scenario="urban", observation_keys=ALL_KEYS))
    obs, _ = env.reset(seed=seed)
    rng = np.random.default_rng(7)
    out = []
    for _ in range(steps):
        action = np.array([rng.uniform(0.3, 0.7), rng.uniform(-0.05, 0.05), 0.0], np.float32)
        obs, reward, terminated, truncated, info = env.step(action)
        out.append((obs["state"].tobytes(), obs["neighbors"].tobytes(), obs["camera"].tobytes(),
                    reward, terminated, truncated, tuple(info.values())))
        if terminated or truncated:
            break
    return out


def test_same_seed_and_actions_give_the_same_trajectory() -> None:
    assert _rollout(5) == _rollout(5)
    assert _rollout(5) != _rollout(6)


def test_a_world_does_not_depend_on_its_batch() -> None:
    params = world_params(SimulatorConfig(scenario="urban"))
    alone, batch = World(params, 1), World(params, 5)
    alone.reset(np.array([0]), np.array([1234]))
    batch.reset(np.arange(5), np.array([1, 2, 3, 1234, 5]))
    rng = np.random.default_rng(0)
    for _ in range(80):
        actions = np.stack([rng.uniform(0, 1, 5), rng.uniform(-0.1, 0.1, 5), np.zeros(5)], axis=1)
        alone.step(actions[3:4])
        batch.step(actions)
    for name in ("x", "y", "yaw", "v", "s"):
        np.testing.assert_array_equal(getattr(alone, name)[0], getattr(batch, name)[3])
    for name in ("s", "v", "d"):
        np.testing.assert_array_equal(
            getattr(alone.traffic, name)[0],
            getattr(batch.traffic, name)[3])
    np.testing.assert_array_equal(alone.cross.q[0], batch.cross.q[3])


def test_info_has_the_contract_keys() -> None:
    env = EmbeddedDrivingEnv()
    _, reset_info = env.reset(seed=0)
    assert tuple(reset_info) == OBSERVATION_INFO_KEYS and reset_info["episode_step"] == 0
    _, _, _, _, info = env.step(np.array([0.5, 0.0, 0.0], np.float32))
    assert tuple(info) == INFO_KEYS + OBSERVATION_INFO_KEYS
    assert info["episode_step"] == 1 and info["episode_seed"] == reset_info["episode_seed"]
    assert isinstance(info["episode_seed"], int) and isinstance(info["x"], float)
    obs, _ = env.reset(seed=0)
    assert obs["state"].shape == (len(STATE_FEATURES),)
    expert = EmbeddedDrivingEnv(SimulatorConfig(expert_action=True))
    _, reset_info = expert.reset(seed=0)
    np.testing.assert_array_equal(reset_info[EXPERT_KEY], expert.autopilot())
    assert reset_info[EXPERT_KEY].shape == (3,)


def test_observation_keys_describe_the_new_episode_after_an_autoreset() -> None:
    n = 6
    envs = EmbeddedVectorEnv(n, SimulatorConfig(scenario="urban", expert_action=True))
    _, info = envs.reset(seed=11)
    assert set(info) == {*OBSERVATION_INFO_KEYS, EXPERT_KEY}
    first_seeds = info["episode_seed"].copy()
    assert info["episode_seed"].dtype == np.int64 and (info["episode_step"] == 0).all()
    # Worlds 0-2 steer hard left and crash; the others follow the autopilot.
    hard_left = np.array([1.0, 1.0, 0.0], np.float32)
    step = 0
    while step < 200:
        step += 1
        actions = info[EXPERT_KEY].copy()
        actions[:3] = hard_left
        _, _, terminated, truncated, info = envs.step(actions)
        done = terminated | truncated
        if done.any():
            break
    assert done[:3].any() and not done[3:].any()
    # Event keys: the finished episode's last step; observation keys: the new episode's.
    assert (info["collision"] | info["off_road"])[done].all()
    assert (info["episode_step"][done] == 0).all() and (info["episode_step"][~done] == step).all()
    assert (info["episode_seed"][done] != first_seeds[done]).all()
    assert (info["episode_seed"][~done] == first_seeds[~done]).all()
    w = envs.world
    for key, value in (("x", w.x), ("y", w.y), ("yaw", w.yaw), ("speed", w.v)):
        np.testing.assert_array_equal(info[key], value)
    # The speed of the new episode's first observation, not the crash's last speed.
    assert (info["speed"][done] != info["velocity"][done]).all()
    np.testing.assert_array_equal(info["speed"][~done], info["velocity"][~done])
    np.testing.assert_array_equal(info[EXPERT_KEY], envs.autopilot())
    assert info[EXPERT_KEY].shape == (n, 3) and info[EXPERT_KEY].dtype == np.float32
    # Off by default: training does not pay for the expert.
    _, plain = EmbeddedVectorEnv(2).reset(seed=0)
    assert EXPERT_KEY not in plain


@pytest.mark.parametrize(("action", "message"), [
    (np.array([np.nan, 0.0, 0.0]), "NaN or infinite values in throttle"),
    (np.array([0.5, np.inf, 0.0]), "NaN or infinite values in steer"),
    (np.array([0.5, 0.0]), r"action must have shape \(3,\)"),
])
def test_bad_actions_are_named(action: np.ndarray, message: str) -> None:
    env = EmbeddedDrivingEnv()
    env.reset(seed=0)
    with pytest.raises(ValueError, match=message):
        env.step(action)


def test_vector_env_resets_finished_worlds_in_the_same_step() -> None:
    envs = gym.make_vec(ENV_ID, num_envs=8, vectorization_mode="vector_entry_point")
    assert isinstance(envs.unwrapped, EmbeddedVectorEnv)
    envs.reset(seed=3)
    crash = np.tile(np.array([1.0, 1.0, 0.0], np.float32), (8, 1))  # full throttle, hard left
    for _ in range(200):
        obs, _, terminated, truncated, info = envs.step(crash)
        if (terminated | truncated).any():
            break
    done = terminated | truncated
    assert done.any() and info["_final_obs"].tolist() == done.tolist()
    # The returned observation is a fresh episode's: no progress yet.
    assert np.all(obs["state"][done, 6] < 0.02)
    assert np.all(info["final_obs"]["state"][done, 6] >= 0.0)
    with pytest.raises(ValueError, match=r"action must have shape \(8, 3\)"):
        envs.step(crash[:4])


def test_render_and_camera_frames() -> None:
    env = EmbeddedDrivingEnv(SimulatorConfig(scenario="night", observation_keys=["camera"]),
                             render_mode="rgb_array")
    obs, _ = env.reset(seed=0)
    assert obs["camera"].shape == (64, 64, 3) and obs["camera"].dtype == np.uint8
    frame = env.render()
    assert frame.shape == (256, 256, 3)
    day = EmbeddedDrivingEnv(SimulatorConfig(scenario="urban", observation_keys=["camera"]))
    assert day.reset(seed=0)[0]["camera"].mean() > obs["camera"].mean() * 2  # night is darker
