"""The CARLA backend's logic, through the real ``carla`` client's types.

No server runs here: what needs one is in the ``carla``-marked test at the end, which the
self-hosted GPU workflow runs against `make carla-up` (CARLA_HOST, CARLA_PORT).
"""

from __future__ import annotations

import math
import os
import time
from typing import Any

import carla
import gymnasium as gym
import numpy as np
import pytest

from carla_env import ENV_ID, SimulatorConfig
from carla_env.carla_backend import (
    RouteTracker,
    apply_sync_settings,
    bgra_to_rgb,
    contract_pose,
    lane_geometry,
    neighbor_features,
    release_sync_settings,
    step_info,
    vehicle_control,
)
from carla_env.carla_client import CarlaConnectionError, connect
from carla_env.contract import INFO_KEYS, OBSERVATION_INFO_KEYS, observation_space
from carla_env.embedded import EmbeddedDrivingEnv
from carla_env.reward import DrivingReward, RewardConfig, compute_reward


def _tf(x: float, y: float, yaw: float) -> carla.Transform:
    return carla.Transform(carla.Location(x=x, y=y, z=0.0), carla.Rotation(yaw=yaw))


def test_control_flips_steer_to_carla_convention() -> None:
    control = vehicle_control(np.array([0.6, 0.25, 0.0], np.float32))
    assert isinstance(control, carla.VehicleControl)
    assert control.throttle == pytest.approx(0.6) and control.steer == pytest.approx(-0.25)


def test_synchronous_settings_respect_substepping_bounds() -> None:
    cfg = SimulatorConfig(backend="carla", physics_dt=0.0125, control_dt=0.05)
    settings = apply_sync_settings(carla.WorldSettings(), cfg)
    assert settings.synchronous_mode and settings.substepping
    assert settings.fixed_delta_seconds == pytest.approx(0.05)
    assert settings.max_substep_delta_time == pytest.approx(0.0125)
    assert settings.max_substeps == 4
    assert settings.fixed_delta_seconds <= (
        settings.max_substep_delta_time * settings.max_substeps + 1e-9)
    released = release_sync_settings(settings)
    assert not released.synchronous_mode


def test_lane_geometry_uses_left_positive_convention() -> None:
    # CARLA's y axis points right: y = -1 is one metre to the left of an eastbound lane.
    lateral, heading = lane_geometry(_tf(10.0, -1.0, -10.0), _tf(10.0, 0.0, 0.0))
    assert lateral == pytest.approx(1.0)
    assert heading == pytest.approx(math.radians(10.0))


def test_neighbors_from_carla_transforms() -> None:
    ego = _tf(0.0, 0.0, 90.0)  # facing CARLA +y
    ahead = (_tf(0.0, 20.0, 90.0), carla.Vector3D(0.0, 5.0, 0.0))
    left = (_tf(5.0, 0.0, 90.0), carla.Vector3D(0.0, 0.0, 0.0))  # +x is left when facing +y
    feats = neighbor_features(ego, carla.Vector3D(0.0, 5.0, 0.0), [ahead, left], k=3)
    np.testing.assert_allclose(feats[0, :2], [0.0, 0.1], atol=1e-6)  # nearest: 5 m left
    np.testing.assert_allclose(feats[1, :3], [0.4, 0.0, 0.0], atol=1e-6)  # 20 m ahead, same v
    assert feats[2].sum() == 0 and feats[:2, -1].tolist() == [1.0, 1.0]


def test_camera_bytes_become_rgb() -> None:
    bgra = np.zeros((2, 3, 4), np.uint8)
    bgra[..., 0], bgra[..., 2] = 255, 10  # blue, red
    rgb = bgra_to_rgb(bgra.tobytes(), 2, 3)
    assert rgb.shape == (2, 3, 3) and rgb[0, 0].tolist() == [10, 0, 255]


def test_route_tracker_projects_progress() -> None:
    route = RouteTracker(np.stack([np.arange(0, 100, 2.0), np.zeros(50)], axis=1))
    assert route.project(10.5, 0.7) == pytest.approx(10.5)
    assert route.project(30.2, -0.3) == pytest.approx(30.2)


def test_one_reward_serves_both_backends() -> None:
    """The CARLA side's info (built from carla types) and the embedded side's share keys and
    the reward function; the wrapper applies it unchanged."""
    carla_info, *_ = step_info(_tf(5.0, -0.5, -3.0), carla.Vector3D(8.0, 0.0, 0.0),
                               _tf(5.0, 0.0, 0.0), 12.0, 400.0, 11.2, 7.9, 0.5, 0.1, False, False,
                               carla.TrafficLightState.Green, 0.05)
    assert tuple(carla_info) == INFO_KEYS
    weights = RewardConfig(lane_keeping=1.0)
    carla_reward = float(compute_reward(carla_info, weights))
    # progress 0.8 m, 0.5 m off-centre, jerk (1.0 - 0.5) / 0.1 = 5 m/s^3, steer change 0.05
    assert carla_reward == pytest.approx(0.8 / 3.0 - 1.0 * (0.5 / 1.75)**2 - 0.02 * 0.5 -
                                         0.1 * 0.05)
    env = DrivingReward(EmbeddedDrivingEnv(), weights)
    env.reset(seed=0)
    _, reward, _, _, info = env.step(np.array([0.5, 0.0, 0.0], np.float32))
    assert tuple(info) == tuple(carla_info) + OBSERVATION_INFO_KEYS
    assert reward == pytest.approx(float(compute_reward(info, weights)))


def test_pose_in_the_contract_frame() -> None:
    # CARLA: y to the right, yaw clockwise in degrees; the contract: y left, yaw in radians.
    x, y, yaw = contract_pose(_tf(3.0, 4.0, 90.0))
    assert (x, y) == (3.0, -4.0) and yaw == pytest.approx(-math.pi / 2)
    assert contract_pose(_tf(0.0, 0.0, 350.0))[2] == pytest.approx(math.radians(10.0))


def test_red_light_and_off_road_from_carla_types() -> None:
    info, *_ = step_info(_tf(0, 0, 0), carla.Vector3D(3.0, 0.0, 0.0), None, 1.0, 100.0, 0.9, 3.0,
                         0.0, 0.1, False, True, carla.TrafficLightState.Red, 0.0)
    assert info["off_road"] and info["red_light"] and info["must_stop"] and info["lane_invasion"]


def test_unreachable_server_fails_within_the_timeout_naming_it(free_port: int) -> None:
    port = free_port
    start = time.monotonic()
    with pytest.raises(CarlaConnectionError, match=f"127.0.0.1:{port}.*make carla-up"):
        connect("127.0.0.1", port, timeout=1.0)
    assert time.monotonic() - start < 2.5
    cfg = SimulatorConfig(backend="carla",
                          carla_host="127.0.0.1",
                          carla_port=port,
                          carla_timeout=1.0)
    start = time.monotonic()
    with pytest.raises(CarlaConnectionError, match=f"127.0.0.1:{port}"):
        gym.make(ENV_ID, config=cfg)
    assert time.monotonic() - start < 2.5


@pytest.mark.carla
def test_live_server_episode() -> None:
    cfg = SimulatorConfig(backend="carla",
                          carla_host=os.environ.get("CARLA_HOST", "127.0.0.1"),
                          carla_port=int(os.environ.get("CARLA_PORT", "2000")),
                          carla_timeout=30.0,
                          observation_keys=["camera", "state", "neighbors"],
                          max_vehicles=10)
    env = DrivingReward(gym.make(ENV_ID, config=cfg).unwrapped)
    try:
        obs, _ = env.reset(seed=0)
        assert observation_space(cfg).contains(obs)
        for _ in range(30):
            obs, reward, terminated, truncated, info = env.step(
                np.array([0.5, 0.0, 0.0], np.float32))
            assert tuple(k for k in info if k in INFO_KEYS) == INFO_KEYS
            assert all(k in info for k in OBSERVATION_INFO_KEYS)
            assert np.isfinite(reward)
            if terminated or truncated:
                break
        assert obs["camera"].any()
    finally:
        env.close()


class _FakeWaypoint:
    """A driving-lane waypoint on a straight road along CARLA's +x (its centre at y = 0)."""

    lane_width = 3.5
    lane_id = -1
    lane_type = carla.LaneType.Driving

    def __init__(self, x: float) -> None:
        self.transform = _tf(x, 0.0, 0.0)

    def next(self, distance: float) -> list[_FakeWaypoint]:
        return [_FakeWaypoint(self.transform.location.x + distance)]

    def get_right_lane(self) -> None:
        return None

    get_left_lane = get_right_lane


class _FakeActor:
    """The ego (moving along +x at 10 m/s per unit of throttle) or a sensor."""

    def __init__(self, actor_id: int, transform: carla.Transform) -> None:
        self.id = actor_id
        self.transform = transform
        self.speed = 0.0

    def apply_control(self, control: carla.VehicleControl) -> None:
        self.speed = 10.0 * control.throttle

    def get_transform(self) -> carla.Transform:
        return self.transform

    def get_location(self) -> carla.Location:
        return self.transform.location

    def get_velocity(self) -> carla.Vector3D:
        return carla.Vector3D(self.speed, 0.0, 0.0)

    def is_at_traffic_light(self) -> bool:
        return False

    def get_speed_limit(self) -> float:
        return 90.0  # km/h

    def listen(self, callback: Any) -> None:
        pass

    def stop(self) -> None:
        pass


class _FakeServer:
    """What ``CarlaDrivingEnv`` calls on a client, its world, map and blueprint library."""

    SPAWN = _tf(0.0, 2.0, 10.0)  # 2 m right of the lane centre, heading 10 degrees right

    def __init__(self) -> None:
        self.ego: _FakeActor | None = None
        self.ids = 0

    def __getattr__(self, name: str) -> Any:
        # The world, traffic manager, blueprint and settings calls: nothing to check there.
        return lambda *args, **kwargs: self

    def get_map(self) -> _FakeServer:
        return self

    name = "Carla/Maps/Town04"

    def get_spawn_points(self) -> list[carla.Transform]:
        return [self.SPAWN]

    def get_settings(self) -> carla.WorldSettings:
        return carla.WorldSettings()

    def filter(self, pattern: str) -> list[Any]:
        return []

    def _spawn(self, transform: carla.Transform) -> _FakeActor:
        self.ids += 1
        return _FakeActor(self.ids, transform)

    def try_spawn_actor(self, blueprint: Any, transform: carla.Transform) -> _FakeActor:
        self.ego = self._spawn(carla.Transform(transform.location, transform.rotation))
        return self.ego

    def spawn_actor(self, blueprint: Any, transform: carla.Transform, attach_to: Any) -> _FakeActor:
        return self._spawn(transform)

    def get_waypoint(self, location: carla.Location, **kwargs: Any) -> _FakeWaypoint:
        return _FakeWaypoint(location.x)

    def tick(self, timeout: float) -> int:
        assert self.ego is not None
        loc = self.ego.transform.location
        self.ego.transform = carla.Transform(
            carla.Location(x=loc.x + self.ego.speed * 0.1, y=loc.y, z=loc.z),
            self.ego.transform.rotation)
        return 1

    def apply_batch_sync(self, commands: list[Any], sync: bool) -> list[Any]:
        return []


def test_carla_env_fills_the_contracts_observation_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    from carla_env import carla_backend
    from carla_env.envs import ContractInfo
    from carla_env.evaluation import evaluate, random_policy

    monkeypatch.setattr(carla_backend, "connect", lambda *args: _FakeServer())
    cfg = SimulatorConfig(backend="carla",
                          observation_keys=["state"],
                          max_vehicles=0,
                          render=False,
                          max_episode_steps=4)
    env = carla_backend.CarlaDrivingEnv(cfg)
    _, info = env.reset(seed=3)
    assert tuple(info) == OBSERVATION_INFO_KEYS
    # The contract's frame: y and yaw positive to the left, where CARLA's point right.
    assert (info["x"], info["y"]) == (0.0, -2.0) and info["yaw"] == pytest.approx(-0.1745, 1e-3)
    assert info["episode_step"] == 0 and isinstance(info["episode_seed"], int)
    assert env.reset(seed=3)[1]["episode_seed"] == info["episode_seed"]
    assert env.reset(seed=4)[1]["episode_seed"] != info["episode_seed"]
    _, _, _, _, info = env.step(np.array([1.0, 0.0, 0.0], np.float32))
    assert tuple(info) == INFO_KEYS + OBSERVATION_INFO_KEYS
    assert info["episode_step"] == 1 and info["x"] == pytest.approx(1.0)
    assert info["velocity"] == pytest.approx(10.0)
    # Through Gymnasium's vector env and ContractInfo, as make_vector_env builds it.
    sync = gym.vector.SyncVectorEnv([lambda: carla_backend.CarlaDrivingEnv(cfg)] * 2,
                                    autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    summary = evaluate(ContractInfo(sync, cfg), random_policy(0), 3, seed=0)
    assert [e["outcome"] for e in summary["per_episode"]] == ["timeout"] * 3
    assert [e["steps"] for e in summary["per_episode"]] == [4] * 3
