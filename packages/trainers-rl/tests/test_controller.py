"""WaypointController: geometry and pedals, against the simulator's own vehicle and autopilot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from carla_env import SimulatorConfig
from carla_env.embedded import EmbeddedVectorEnv
from carla_env.sim.vehicles import EgoParams, bicycle_step
from trainers_rl.evaluation.controller import ControllerConfig, WaypointController
from trainers_rl.imitation.demos import DemoConfig, _waypoints, load_demos, record_demos


def straight(speed: float, n: int = 10, dt: float = 0.5) -> np.ndarray:
    """(1, n, 2) waypoints straight ahead at ``speed``."""
    x = speed * dt * np.arange(1, n + 1)
    return np.stack([x, np.zeros(n)], axis=1)[None]


def test_straight_waypoints_steer_straight() -> None:
    wp = np.concatenate([straight(5.0), straight(20.0)])
    actions = WaypointController().act(wp, np.array([5.0, 20.0]))
    assert actions.shape == (2, 3) and actions.dtype == np.float32
    np.testing.assert_allclose(actions[:, 1], 0.0, atol=1e-7)


def circle_drive(steer: float, speed: float) -> np.ndarray:
    """Waypoints (T, 2) of the simulator's car holding ``steer`` at ``speed``, as demos record."""
    p = EgoParams()
    x = y = yaw = 0.0
    poses = []
    for _ in range(60):
        poses.append((x, y, yaw))
        for _ in range(10):
            x, y, yaw, _ = bicycle_step(x, y, yaw, speed, 0.0, steer, 0.0, 1.0, 0.01, p)
    pose = np.array(poses)
    return _waypoints(pose[:, 0], pose[:, 1], pose[:, 2], 10, 5)[0]


@pytest.mark.parametrize("steer,speed", [(0.05, 5.0), (0.1, 12.0), (-0.2, 8.0), (0.05, 25.0)])
def test_steer_inverts_the_simulators_vehicle(steer: float, speed: float) -> None:
    # The simulator's bicycle turns left (+y in the ego frame) for positive steer; following
    # the circle it drives must give back the steer that drove it, sign and size.
    wp = circle_drive(steer, speed)
    assert np.sign(wp[-1, 1]) == np.sign(steer)
    got = WaypointController().steer(wp[None].astype(np.float64), np.array([speed]))[0]
    assert got == pytest.approx(steer, rel=0.1)


def test_left_and_right_curves_mirror() -> None:
    wp = circle_drive(0.1, 10.0)[None].astype(np.float64)
    mirrored = wp * np.array([1.0, -1.0])
    controller = WaypointController()
    left = controller.steer(wp, np.array([10.0]))
    right = controller.steer(mirrored, np.array([10.0]))
    assert left[0] > 0.05
    np.testing.assert_allclose(right, -left)


def test_zero_spacing_brakes_and_holds_still() -> None:
    controller = WaypointController()
    wp = np.zeros((2, 10, 2))
    actions = controller.act(wp, np.array([0.0, 15.0]))
    np.testing.assert_array_equal(actions[:, 0], 0.0)  # no throttle
    np.testing.assert_array_equal(actions[:, 1], 0.0)  # nowhere to steer to
    assert actions[0, 2] >= controller.config.stop_brake
    assert actions[1, 2] == 1.0  # stopping from 15 m/s: full brake


def test_faster_spacing_means_more_throttle_and_slower_means_brake() -> None:
    speed = np.full(3, 10.0)
    wp = np.concatenate([straight(8.0), straight(11.0), straight(14.0)])
    actions = WaypointController().act(wp, speed)
    throttle, brake = actions[:, 0], actions[:, 2]
    assert throttle[0] == 0.0 and brake[0] > 0.0  # slower than now: brake
    assert 0.0 < throttle[1] < throttle[2] and brake[1] == brake[2] == 0.0
    target = WaypointController().target_speed(wp)
    np.testing.assert_allclose(target, [8.0, 11.0, 14.0])


def test_integrator_accumulates_per_env_and_resets_with_new_episodes() -> None:
    controller = WaypointController(ControllerConfig(kp=0.0, ki=1.0))
    wp = np.concatenate([straight(12.0), straight(12.0)])
    speed = np.array([10.0, 10.0])
    first = controller.act(wp, speed)
    second = controller.act(wp, speed)
    assert np.all(second[:, 0] > first[:, 0])  # the same error, integrated longer
    third = controller.act(wp, speed, new_episode=np.array([True, False]))
    assert third[0, 0] == pytest.approx(first[0, 0])
    assert third[1, 0] > second[1, 0]
    # A batch of another size starts afresh.
    single = controller.act(wp[:1], speed[:1])
    assert single[0, 0] == pytest.approx(first[0, 0])


def test_bad_shapes_are_named() -> None:
    with pytest.raises(ValueError, match=r"\(B, T, 2\)"):
        WaypointController().act(np.zeros((2, 10)), np.zeros(2))
    with pytest.raises(ValueError, match="lookahead_max"):
        ControllerConfig(lookahead_min=10.0, lookahead_max=5.0)


def lane_centre_waypoints(envs: EmbeddedVectorEnv, lane: np.ndarray, speed: float) -> np.ndarray:
    """Oracle waypoints: the ego's lane centre ahead, spaced for ``speed``, in the ego frame."""
    w = envs.world
    s = w.s[:, None] + speed * 0.5 * np.arange(1, 11)[None, :]
    x, y, _ = w.routes.to_world(w.route[:, None], s, (lane * w.lane_width)[:, None] + 0 * s)
    dx, dy = x - w.x[:, None], y - w.y[:, None]
    cos, sin = np.cos(w.yaw)[:, None], np.sin(w.yaw)[:, None]
    return np.stack([cos * dx + sin * dy, -sin * dx + cos * dy], axis=-1)


@pytest.mark.parametrize("map_kind", ["highway", "ring"])
def test_following_the_lane_centre_drives_the_route(map_kind: str) -> None:
    sim = SimulatorConfig(map=map_kind,
                          traffic_density=0.0,
                          route_length=300.0,
                          max_episode_steps=400)
    envs = EmbeddedVectorEnv(8, sim)
    obs, _ = envs.reset(seed=3)
    lane, target = envs.world.lane.copy(), 0.7 * envs.world.speed_limit
    controller = WaypointController()
    deviation, speeds = [], []
    for _ in range(400):
        speed = obs["state"][:, 0] * envs.world.speed_limit
        actions = controller.act(lane_centre_waypoints(envs, lane, target), speed)
        obs, _, terminated, truncated, info = envs.step(actions)
        assert not (info["off_road"] | info["collision"] | truncated).any()
        if terminated.any():
            break
        deviation.append(info["lane_deviation"])
        speeds.append(info["velocity"])
    assert info["route_completed"].any()
    assert np.max(deviation) < 0.5
    assert np.mean(speeds[-20:]) == pytest.approx(target, rel=0.05)


@pytest.fixture(scope="module")
def urban_demos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    sim = SimulatorConfig(scenario="urban", route_length=200.0, max_episode_steps=300)
    out = tmp_path_factory.mktemp("demos") / "urban"
    return record_demos(sim, DemoConfig(episodes=8, num_envs=8), out)


def test_controller_agrees_with_the_autopilot_on_its_own_trajectories(urban_demos: Path) -> None:
    # Waypoints the autopilot went on to drive should ask for what the autopilot did.
    arrays, _ = load_demos(urban_demos)
    # State features: speed / speed limit, and the speed limit / 30.
    speed = arrays["state"][:, 0] * arrays["state"][:, -1] * 30.0
    ours = WaypointController().act(arrays["waypoints"], speed)
    expert = arrays["actions"]
    turning = np.abs(expert[:, 1]) > 0.05
    assert turning.sum() > 50  # junction turns are in the data
    assert np.mean(np.sign(ours[turning, 1]) == np.sign(expert[turning, 1])) > 0.95
    assert np.corrcoef(ours[:, 1], expert[:, 1])[0, 1] > 0.7
    pedal, expert_pedal = ours[:, 0] - ours[:, 2], expert[:, 0] - expert[:, 2]
    braking, accelerating = expert[:, 2] > 0.1, expert[:, 0] > 0.5
    assert braking.sum() > 20 and accelerating.sum() > 20
    assert pedal[braking].mean() < pedal[accelerating].mean() - 0.3
    assert np.corrcoef(pedal, expert_pedal)[0, 1] > 0.5
