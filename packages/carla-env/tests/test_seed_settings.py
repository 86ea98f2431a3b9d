"""Seed 001's simulator settings: reward keys, CARLA_HOST/PORT, render/headless, towns."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from carla_env import CARLABridge, RewardConfig, SimulatorConfig
from carla_env.carla_backend import apply_render_settings, release_sync_settings
from carla_env.embedded import EmbeddedDrivingEnv, EmbeddedVectorEnv
from carla_env.reward import compute_reward
from trainyard_core.config import ConfigError, load_config


def test_seed_reward_keys_are_aliases_of_ours() -> None:
    # seed 001's CARLARewardWrapper reward_config keys
    cfg = RewardConfig(speed_weight=2.0, lane_weight=0.5, collision_penalty=20.0, target_speed=8.33)
    assert (cfg.progress, cfg.lane_keeping, cfg.collision) == (2.0, 0.5, 20.0)
    assert not hasattr(cfg, "speed_weight")  # resolved on the way in: one field per weight
    assert dataclasses.replace(cfg) == cfg  # normalised once: a copy is the same config
    assert SimulatorConfig(reward={"speed_weight": 2.0}).reward.progress == 2.0


def test_conflicting_alias_and_bad_weight_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"collision_penalty=5.0 and collision=20.0"):
        RewardConfig(collision=20.0, collision_penalty=5.0)
    with pytest.raises(ValueError, match=r"reward weight lane_keeping must be a number >= 0"):
        RewardConfig(lane_weight=-1.0)
    with pytest.raises(ValueError, match=r"reward: .*unexpected keyword argument 'speed'"):
        SimulatorConfig(reward={"speed": 1.0})


def test_target_speed_peaks_the_speed_reward_like_the_seed() -> None:
    cfg = RewardConfig(target_speed=10.0, lane_keeping=0, comfort=0, weaving=0,
                       idle=0).resolve(3.5, 30.0, 0.1)
    assert cfg.speed_scale == pytest.approx(1.0)  # 10 m/s for 0.1 s
    zeros = {
        k: np.zeros(4) for k in ("lane_deviation", "collision", "off_road", "red_light", "jerk",
                                "steer_change", "must_stop")
    }
    speeds = np.array([5.0, 10.0, 15.0, 25.0])
    info = zeros | {"velocity": speeds, "progress": speeds * 0.1}
    # seed 001: max(0, 1 - |v - target| / target)
    np.testing.assert_allclose(compute_reward(info, cfg), [0.5, 1.0, 0.5, 0.0])


def test_reward_weights_from_a_training_yaml_reach_the_env(tmp_path: Path) -> None:
    yaml = tmp_path / "sim.yaml"
    yaml.write_text("reward:\n  speed_weight: 2.0\n  collision_penalty: 50.0\n")
    cfg = load_config(SimulatorConfig, files=[yaml])
    assert cfg.reward.progress == 2.0 and cfg.reward.collision == 50.0
    envs = [EmbeddedVectorEnv(2, c) for c in (SimulatorConfig(), cfg)]
    assert envs[1].batch.reward_cfg.collision == 50.0
    assert envs[1].batch.reward_cfg.speed_scale == envs[0].batch.reward_cfg.speed_scale
    rewards = []
    for env in envs:
        env.reset(seed=3)
        action = np.tile(np.array([[0.6, 0.0, 0.0]], np.float32), (2, 1))
        for _ in range(10):
            _, reward, *_ = env.step(action)
        rewards.append(reward)
    assert not np.allclose(rewards[0], rewards[1])
    with pytest.raises(ConfigError, match=r"reward.speed_weigth"):
        load_config(SimulatorConfig, overrides=["reward.speed_weigth=2"])


def test_carla_host_and_port_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARLA_HOST", "carla")
    monkeypatch.setenv("CARLA_PORT", "2004")
    assert (SimulatorConfig().carla_host, SimulatorConfig().carla_port) == ("carla", 2004)
    explicit = SimulatorConfig(carla_host="localhost", carla_port=2000)
    assert (explicit.carla_host, explicit.carla_port) == ("localhost", 2000)
    assert load_config(SimulatorConfig, overrides=["carla_port=3000"]).carla_port == 3000
    monkeypatch.setenv("CARLA_PORT", "two-thousand")
    with pytest.raises(ValueError, match=r"environment variable CARLA_PORT .* 'two-thousand'"):
        SimulatorConfig()


def test_town_only_on_the_carla_backend() -> None:
    with pytest.raises(ValueError, match=r"only backend='carla'"):
        SimulatorConfig(carla_town="Town01")
    carla = SimulatorConfig(backend="carla", carla_town="Town01")
    assert carla.town == "Town01"
    assert carla.as_embedded().carla_town is None and carla.as_embedded().backend == "embedded"


def test_render_false_draws_nothing_and_refuses_what_needs_frames() -> None:
    with pytest.raises(ValueError, match=r"render=False .* camera"):
        SimulatorConfig(render=False, observation_keys=["camera", "state"])
    cfg = SimulatorConfig(render=False)
    with pytest.raises(ValueError, match=r"render=False"):
        EmbeddedDrivingEnv(cfg, render_mode="rgb_array")
    with pytest.raises(ValueError, match=r"render=False"):
        EmbeddedVectorEnv(2, cfg, render_mode="rgb_array")

    class Settings:  # the attributes of carla.WorldSettings these functions set
        no_rendering_mode = False
        synchronous_mode = True
        fixed_delta_seconds = 0.1

    assert apply_render_settings(Settings(), cfg).no_rendering_mode is True
    assert apply_render_settings(Settings(), SimulatorConfig()).no_rendering_mode is False
    settings = Settings()
    settings.no_rendering_mode = True
    assert release_sync_settings(settings).no_rendering_mode is False


def test_render_true_keeps_frames_for_videos() -> None:
    bridge = CARLABridge(SimulatorConfig(render=True, headless=False), render_mode="rgb_array")
    bridge.reset(seed=0)
    frame = bridge.render()
    assert frame.ndim == 3 and frame.shape[2] == 3 and frame.any()
    bridge.close()


def test_bridge_needs_initialize_before_step_and_names_its_input() -> None:
    bridge = CARLABridge(SimulatorConfig())
    with pytest.raises(RuntimeError, match=r"initialize"):
        bridge.step(np.zeros(3, np.float32))
    with pytest.raises(TypeError, match=r"SimulatorConfig"):
        CARLABridge({"carla_town": "Town01"})  # type: ignore[arg-type]
