"""The CARLA backend: the same Gymnasium contract, driven by a CARLA 0.9.16 server.

The simulator runs in synchronous mode: ``fixed_delta_seconds`` is the control step, physics
sub-steps of ``physics_dt`` keep within CARLA's documented bounds, and the traffic manager
runs synchronously with a seed. Sensor data is matched to the frame ``world.tick()``
returns. Geometry is converted to the contract's convention: x forward, y and steer positive
to the left (CARLA's y axis and steer point right).

``info`` carries the contract's event keys for the step and its observation keys (pose,
episode seed and step) for the returned observation. There is no ``expert_action``: the
``carla`` wheel ships the client only, not CARLA's ``agents.navigation`` (BasicAgent), so this
backend has no expert and ``SimulatorConfig`` refuses ``expert_action`` on it.

The pure functions here take and return ``carla`` types, so their logic is tested with the
real client library where no server is running.
"""

from __future__ import annotations

import math
import queue
from typing import Any

import numpy as np

from carla_env.carla_client import CarlaConnectionError, connect
from carla_env.config import SimulatorConfig
from carla_env.contract import (
    INFO_KEYS,
    NEIGHBOR_FEATURES,
    STATE_FEATURES,
    DrivingEnv,
    check_action,
)
from carla_env.reward import RewardConfig, compute_reward

__all__ = [
    "CarlaDrivingEnv", "RouteTracker", "apply_render_settings", "apply_sync_settings",
    "bgra_to_rgb", "contract_pose", "lane_geometry", "neighbor_features", "release_sync_settings",
    "spectator_transform", "step_info", "vehicle_control"
]

EGO_BLUEPRINT = "vehicle.tesla.model3"
CAMERA_TRANSFORM = ((1.5, 0.0, 2.4), (-10.0, 0.0, 0.0))  # location, (pitch, yaw, roll)


def _carla() -> Any:
    import carla

    return carla


def vehicle_control(action: np.ndarray) -> Any:
    """``carla.VehicleControl`` for a contract action (steer sign flipped: CARLA's + is right)."""
    throttle, steer, brake = (float(a) for a in action)
    return _carla().VehicleControl(throttle=throttle, steer=-steer, brake=brake)


def apply_sync_settings(settings: Any, cfg: SimulatorConfig) -> Any:
    """Synchronous mode with CARLA's sub-stepping: ``control_dt`` split into ``physics_dt``."""
    settings.synchronous_mode = True
    settings.fixed_delta_seconds = cfg.control_dt
    settings.substepping = True
    settings.max_substep_delta_time = cfg.physics_dt
    settings.max_substeps = cfg.substeps
    return settings


def apply_render_settings(settings: Any, cfg: SimulatorConfig) -> Any:
    """``render=False``: the server skips drawing (``no_rendering_mode``), which only a run
    without a camera can afford (the config refuses a camera with it)."""
    settings.no_rendering_mode = not cfg.render
    return settings


def release_sync_settings(settings: Any) -> Any:
    """Back to asynchronous mode and rendering, as a server is found by the next client."""
    settings.synchronous_mode = False
    settings.fixed_delta_seconds = None
    settings.no_rendering_mode = False
    return settings


def spectator_transform(ego: Any) -> Any:
    """Where the server window's camera goes for ``headless=False``: 8 m behind the ego car
    and 4 m up, looking along its heading."""
    carla = _carla()
    yaw = math.radians(ego.rotation.yaw)
    loc = ego.location
    return carla.Transform(
        carla.Location(x=loc.x - 8.0 * math.cos(yaw), y=loc.y - 8.0 * math.sin(yaw), z=loc.z + 4.0),
        carla.Rotation(pitch=-15.0, yaw=ego.rotation.yaw))


def _wrap_deg(angle: float) -> float:
    return (angle + 180.0) % 360.0 - 180.0


def contract_pose(transform: Any) -> tuple[float, float, float]:
    """``(x, y, yaw)`` of a CARLA Transform in the contract's frame: metres and radians, y and
    yaw positive to the left (CARLA's y axis points right, its yaw is clockwise in degrees)."""
    loc = transform.location
    return float(loc.x), -float(loc.y), -math.radians(_wrap_deg(transform.rotation.yaw))


def lane_geometry(ego: Any, lane: Any) -> tuple[float, float]:
    """Lateral offset (m, + left) of ``ego`` from the lane centre ``lane`` (both Transforms),
    and the heading error (rad, + when the ego points left of the lane)."""
    yaw = math.radians(lane.rotation.yaw)
    dx = ego.location.x - lane.location.x
    dy = ego.location.y - lane.location.y
    right = -math.sin(yaw) * dx + math.cos(yaw) * dy  # CARLA's y axis points right
    heading = -math.radians(_wrap_deg(ego.rotation.yaw - lane.rotation.yaw))
    return -right, heading


def neighbor_features(ego: Any, ego_velocity: Any, others: list[tuple[Any, Any]],
                      k: int) -> np.ndarray:
    """The ``neighbors`` observation from CARLA transforms and velocities (nearest ``k``)."""
    out = np.zeros((k, len(NEIGHBOR_FEATURES)), np.float32)
    if not others or k == 0:
        return out
    yaw = math.radians(ego.rotation.yaw)
    fx, fy = math.cos(yaw), math.sin(yaw)
    ego_fwd = ego_velocity.x * fx + ego_velocity.y * fy
    rows = []
    for transform, velocity in others:
        dx = transform.location.x - ego.location.x
        dy = transform.location.y - ego.location.y
        fwd, right = fx * dx + fy * dy, -fy * dx + fx * dy
        rel = -math.radians(_wrap_deg(transform.rotation.yaw - ego.rotation.yaw))
        v_fwd, v_right = fx * velocity.x + fy * velocity.y, -fy * velocity.x + fx * velocity.y
        rows.append(
            (dx * dx + dy * dy, fwd / 50, -right / 50, (v_fwd - ego_fwd) / 10, -v_right / 10,
             math.cos(rel), math.sin(rel), 1.0))
    rows.sort(key=lambda r: r[0])
    feats = np.array([r[1:] for r in rows[:k]], np.float32)
    out[:len(feats)] = feats
    return out


def bgra_to_rgb(raw: bytes | memoryview, height: int, width: int) -> np.ndarray:
    """A ``carla.Image``'s raw BGRA bytes as an (H, W, 3) RGB array."""
    bgra = np.frombuffer(raw, dtype=np.uint8).reshape(height, width, 4)
    return np.ascontiguousarray(bgra[..., 2::-1])


def step_info(transform: Any, velocity: Any, lane: Any | None, progress_m: float,
              route_length: float, prev_progress: float, prev_speed: float, prev_accel: float,
              dt: float, collided: bool, lane_invaded: bool, light: Any | None,
              steer_change: float) -> tuple[dict[str, Any], float, float, float]:
    """The contract's ``info`` from CARLA types; also the new progress, speed, acceleration.

    ``lane`` is the Transform of the nearest driving-lane waypoint (None: off the road);
    ``light`` the ``carla.TrafficLightState`` the ego waits at, if any.
    """
    speed = math.hypot(velocity.x, velocity.y)
    if lane is None:
        lateral, heading = 0.0, 0.0
    else:
        lateral, heading = lane_geometry(transform, lane)
    accel = (speed - prev_speed) / dt
    red = light is not None and light == _carla().TrafficLightState.Red
    info = {
        "velocity": speed,
        "progress": progress_m - prev_progress,
        "route_progress": progress_m / route_length,
        "lane_deviation": abs(lateral),
        "heading_error": heading,
        "collision": collided,
        "off_road": lane is None or abs(heading) > math.pi / 2,
        "lane_invasion": lane_invaded,
        "red_light": red and speed > 1.0,
        "must_stop": red,
        "route_completed": progress_m >= route_length - 5.0,
        "jerk": (accel - prev_accel) / dt,
        "steer_change": abs(steer_change),
    }
    return info, progress_m, speed, accel


class RouteTracker:
    """Progress along a route given as (P, 2) points (CARLA x, y), projected in a window."""

    def __init__(self, points: np.ndarray) -> None:
        if len(points) < 2:
            raise ValueError("a route needs at least two points")
        self.points = np.asarray(points, dtype=np.float64)
        seg = np.diff(self.points, axis=0)
        self.cum = np.concatenate([[0.0], np.cumsum(np.hypot(seg[:, 0], seg[:, 1]))])
        self.index = 0

    @property
    def length(self) -> float:
        return float(self.cum[-1])

    def project(self, x: float, y: float) -> float:
        """Metres along the route of the point nearest (x, y), searching ahead of the last."""
        lo, hi = max(0, self.index - 2), min(len(self.points), self.index + 30)
        window = self.points[lo:hi]
        i = lo + int(np.argmin((window[:, 0] - x)**2 + (window[:, 1] - y)**2))
        self.index = i
        j = min(i + 1, len(self.points) - 1)
        seg = self.points[j] - self.points[i]
        seg_len = float(np.hypot(*seg))
        along = 0.0 if seg_len == 0 else float(np.dot([x, y] - self.points[i], seg) / seg_len)
        return float(np.clip(self.cum[i] + along, 0.0, self.length))


def _lane_position(wp: Any | None) -> tuple[int, int]:
    """Index of ``wp``'s lane counted from the rightmost driving lane, and the lane count,
    over lanes of the same direction."""
    if wp is None:
        return 0, 1
    carla = _carla()

    def count(step: str) -> int:
        n, other = 0, getattr(wp, step)()
        while (other is not None and other.lane_type == carla.LaneType.Driving and
               other.lane_id * wp.lane_id > 0 and n < 10):
            n, other = n + 1, getattr(other, step)()
        return n

    right, left = count("get_right_lane"), count("get_left_lane")
    return right, right + left + 1


class CarlaDrivingEnv(DrivingEnv):
    """One ego vehicle in a CARLA world, with the embedded backend's spaces and info keys."""

    def __init__(self,
                 config: SimulatorConfig | None = None,
                 render_mode: str | None = None,
                 reward: RewardConfig | None = None,
                 server_manager: Any | None = None) -> None:
        config = config or SimulatorConfig(backend="carla")
        if config.backend != "carla":
            raise ValueError(f"CarlaDrivingEnv needs backend='carla', got {config.backend!r}")
        if render_mode == "rgb_array" and not config.render:
            raise ValueError("render_mode='rgb_array' needs frames, but the SimulatorConfig has "
                             "render=False: set render=True")
        self._setup(config, render_mode)
        spec = config.scenario_spec
        # CARLA's lanes vary by road; the reward's lane scale is the scenario's.
        self.reward_cfg = (reward or config.reward).resolve(spec.lane_width, spec.speed_limit,
                                                            config.control_dt)
        self.server_manager = server_manager
        self._actors: list[Any] = []
        self._sensors: list[Any] = []
        self._traffic_ids: list[int] = []
        self._connect()

    # -------------------------------------------------------------- server
    def _connect(self) -> None:
        carla = _carla()
        cfg = self.config
        self.client = connect(cfg.carla_host, cfg.carla_port, cfg.carla_timeout)
        world = self.client.get_world()
        if world.get_map().name.split("/")[-1] != cfg.town:
            world = self.client.load_world(cfg.town)
        self.world = world
        self.map = world.get_map()
        self.world.set_weather(getattr(carla.WeatherParameters, cfg.weather))
        self.world.apply_settings(
            apply_render_settings(apply_sync_settings(self.world.get_settings(), cfg), cfg))
        self.tm = self.client.get_trafficmanager(cfg.traffic_manager_port)
        self.tm.set_synchronous_mode(True)
        self.tm.set_random_device_seed(cfg.seed)

    def _restart_server(self) -> None:
        if not (self.config.restart_server and self.server_manager is not None):
            raise CarlaConnectionError(
                f"the CARLA server at {self.config.carla_host}:{self.config.carla_port} stopped "
                "answering mid-episode; set restart_server=true with a server manager to recover")
        self.server_manager.restart()
        self._actors, self._sensors, self._traffic_ids = [], [], []
        self._connect()

    # --------------------------------------------------------------- reset
    def reset(self,
              *,
              seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[dict[str, np.ndarray], dict]:
        super().reset(seed=seed)
        self._destroy_actors()
        _carla()
        # Each episode draws from its own seed (info["episode_seed"]), as the embedded
        # backend's do: a baseline keyed on it acts the same in whichever env runs it.
        self.episode_seed = int(self.np_random.integers(2**62))
        rng = self._rng = np.random.default_rng(self.episode_seed)
        spawn_points = self.map.get_spawn_points()
        library = self.world.get_blueprint_library()
        ego_bp = library.find(EGO_BLUEPRINT)
        ego_bp.set_attribute("role_name", "hero")
        order = rng.permutation(len(spawn_points))
        ego = None
        for i in order[:20]:
            ego = self.world.try_spawn_actor(ego_bp, spawn_points[int(i)])
            if ego is not None:
                break
        if ego is None:
            raise RuntimeError(f"no free spawn point for the ego in {self.config.town}")
        self.ego: Any = ego
        self._actors.append(ego)
        self._attach_sensors(library)
        self._spawn_traffic(library, spawn_points, order[20:])
        self.route = RouteTracker(self._plan_route(rng))
        self.steps = 0
        self.prev_progress = 0.0
        self.prev_speed = 0.0
        self.prev_accel = 0.0
        self.prev_steer = 0.0
        self.last_action = np.zeros(3, np.float32)
        self.lane_id: int | None = None
        frame = self.world.tick(self.config.carla_timeout)
        self._collect(frame)
        return self._observe(), self._observation_info()

    def _attach_sensors(self, library: Any) -> None:
        carla = _carla()
        cfg = self.config
        self._camera_queue: queue.Queue | None = None
        self._collisions: list[int] = []
        self._invasions: list[int] = []
        (x, y, z), (pitch, yaw, roll) = CAMERA_TRANSFORM
        mount = carla.Transform(carla.Location(x=x, y=y, z=z),
                                carla.Rotation(pitch=pitch, yaw=yaw, roll=roll))
        if "camera" in cfg.observation_keys or self.render_mode == "rgb_array":
            bp = library.find("sensor.camera.rgb")
            bp.set_attribute("image_size_x", str(cfg.image_width))
            bp.set_attribute("image_size_y", str(cfg.image_height))
            bp.set_attribute("sensor_tick", str(cfg.control_dt))
            camera = self.world.spawn_actor(bp, mount, attach_to=self.ego)
            self._camera_queue = queue.Queue()
            camera.listen(self._camera_queue.put)
            self._sensors.append(camera)
        collision = self.world.spawn_actor(library.find("sensor.other.collision"),
                                           carla.Transform(),
                                           attach_to=self.ego)
        collision.listen(lambda event: self._collisions.append(event.frame))
        invasion = self.world.spawn_actor(library.find("sensor.other.lane_invasion"),
                                          carla.Transform(),
                                          attach_to=self.ego)
        invasion.listen(lambda event: self._invasions.append(event.frame))
        self._sensors += [collision, invasion]

    def _spawn_traffic(self, library: Any, spawn_points: list[Any], order: np.ndarray) -> None:
        carla = _carla()
        cfg = self.config
        count = min(cfg.max_vehicles, len(order))
        blueprints = [
            bp for bp in library.filter("vehicle.*")
            if int(bp.get_attribute("number_of_wheels")) == 4
        ]
        batch = []
        for _n, i in enumerate(order[:count]):
            bp = blueprints[int(self._rng.integers(len(blueprints)))]
            batch.append(
                carla.command.SpawnActor(bp, spawn_points[int(i)]).then(
                    carla.command.SetAutopilot(carla.command.FutureActor, True,
                                               cfg.traffic_manager_port)))
        responses = self.client.apply_batch_sync(batch, True)
        self._traffic_ids = [r.actor_id for r in responses if not r.error]

    def _plan_route(self, rng: np.random.Generator) -> np.ndarray:
        """Waypoints every 2 m from the ego for ``route_length``, random turns at junctions."""
        length = self.config.route_length or self.config.scenario_spec.route_length
        wp = self.map.get_waypoint(self.ego.get_location())
        points = [(wp.transform.location.x, wp.transform.location.y)]
        for _ in range(int(length / 2.0)):
            options = wp.next(2.0)
            if not options:
                break
            wp = options[int(rng.integers(len(options)))]
            points.append((wp.transform.location.x, wp.transform.location.y))
        return np.array(points)

    # ---------------------------------------------------------------- step
    def step(self, action: np.ndarray) -> tuple[dict[str, np.ndarray], float, bool, bool, dict]:
        action = check_action(action)
        self.ego.apply_control(vehicle_control(action))
        try:
            frame = self.world.tick(self.config.carla_timeout)
        except RuntimeError:
            # The server died: bring it back and end this episode as truncated, not lost.
            self._restart_server()
            info = {key: 0.0 for key in INFO_KEYS} | {"server_restarted": True}
            return self._zeros(), 0.0, False, True, info | self._observation_info(pose=False)
        self._collect(frame)
        if not self.config.headless:
            self.world.get_spectator().set_transform(spectator_transform(self.ego.get_transform()))
        self.steps += 1
        info = self._info(action, frame) | self._observation_info()
        self.last_action = action
        reward = float(compute_reward(info, self.reward_cfg))
        terminated = bool(info["collision"] or info["off_road"] or info["route_completed"])
        truncated = self.steps >= self.config.max_episode_steps and not terminated
        return self._observe(), reward, terminated, truncated, info

    def _collect(self, frame: int) -> None:
        """The camera image of ``frame`` (sensor data arrives asynchronously)."""
        self._image = None
        if self._camera_queue is None:
            return
        while True:
            try:
                image = self._camera_queue.get(timeout=self.config.carla_timeout)
            except queue.Empty:
                return
            if image.frame >= frame:
                self._image = bgra_to_rgb(image.raw_data, image.height, image.width)
                return

    def _lane(self) -> tuple[Any | None, float, float]:
        carla = _carla()
        transform = self.ego.get_transform()
        wp = self.map.get_waypoint(transform.location,
                                   project_to_road=False,
                                   lane_type=carla.LaneType.Driving)
        if wp is None:
            return None, 0.0, 0.0
        lateral, heading = lane_geometry(transform, wp.transform)
        return wp, lateral, heading

    def _info(self, action: np.ndarray, frame: int) -> dict[str, Any]:
        transform = self.ego.get_transform()
        velocity = self.ego.get_velocity()
        progress_m = self.route.project(transform.location.x, transform.location.y)
        wp, _, _ = self._lane()
        light = self.ego.get_traffic_light_state() if self.ego.is_at_traffic_light() else None
        info, self.prev_progress, self.prev_speed, self.prev_accel = step_info(
            transform, velocity, wp.transform if wp is not None else None, progress_m,
            self.route.length, self.prev_progress, self.prev_speed, self.prev_accel,
            self.config.control_dt, bool(self._collisions), bool(self._invasions), light,
            float(action[1]) - self.prev_steer)
        self.prev_steer = float(action[1])
        self._invasions.clear()
        return info

    def _observation_info(self, pose: bool = True) -> dict[str, Any]:
        """The contract's observation keys; ``pose=False``: the ego is gone (zeros)."""
        x, y, yaw = contract_pose(self.ego.get_transform()) if pose else (0.0, 0.0, 0.0)
        return {
            "x": x,
            "y": y,
            "yaw": yaw,
            "episode_seed": self.episode_seed,
            "episode_step": self.steps,
        }

    def _observe(self) -> dict[str, np.ndarray]:
        obs: dict[str, np.ndarray] = {}
        for key in self.config.observation_keys:
            if key == "camera":
                shape = (self.config.image_height, self.config.image_width, 3)
                obs[key] = self._image if self._image is not None else np.zeros(shape, np.uint8)
            elif key == "state":
                obs[key] = self._state()
            else:
                obs[key] = self._neighbors()
        return obs

    def _state(self) -> np.ndarray:
        velocity = self.ego.get_velocity()
        speed = math.hypot(velocity.x, velocity.y)
        wp, lateral, heading = self._lane()
        limit = max(self.ego.get_speed_limit() / 3.6, 1.0)
        lane_width = wp.lane_width if wp is not None else 3.5
        light = self.ego.get_traffic_light_state() if self.ego.is_at_traffic_light() else None
        carla = _carla()
        signal = {
            carla.TrafficLightState.Red: 1.0,
            carla.TrafficLightState.Yellow: 0.5
        }.get(light, 0.0)
        progress = self.prev_progress / self.route.length
        curvature = [self._curvature_ahead(a) * 10.0 for a in (10.0, 25.0, 50.0)]
        lane_index, lanes = _lane_position(wp)
        half_road = lanes * lane_width / 2
        road_offset = ((lane_index + 0.5) * lane_width - half_road + lateral) / half_road
        values = [
            speed / limit, lateral / (lane_width / 2), heading, *self.last_action, progress,
            (self.route.length - self.prev_progress) / 1000.0, lane_index / max(1, lanes - 1),
            road_offset, *curvature, 1.0 if light is None else 0.0, signal, limit / 30.0
        ]
        assert len(values) == len(STATE_FEATURES)
        return np.array(values, np.float32)

    def _curvature_ahead(self, ahead: float) -> float:
        pts, i = self.route.points, self.route.index
        j = min(len(pts) - 3, i + int(ahead / 2.0))
        if j < 0:
            return 0.0
        a, b, c = pts[j], pts[j + 1], pts[j + 2]
        h1 = math.atan2(b[1] - a[1], b[0] - a[0])
        h2 = math.atan2(c[1] - b[1], c[0] - b[0])
        step = max(float(np.hypot(*(c - b))), 1e-3)
        return -((h2 - h1 + math.pi) % (2 * math.pi) - math.pi) / step  # + left

    def _neighbors(self) -> np.ndarray:
        others = [
            (a.get_transform(), a.get_velocity()) for a in self.world.get_actors(self._traffic_ids)
        ]
        return neighbor_features(self.ego.get_transform(), self.ego.get_velocity(), others,
                                 self.config.neighbors)

    def _zeros(self) -> dict[str, np.ndarray]:
        return {
            key: np.zeros(space.shape or (), space.dtype or np.float32)
            for key, space in self.observation_space.spaces.items()
        }

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        return self._image

    # ---------------------------------------------------------------- close
    def _destroy_actors(self) -> None:
        carla = _carla()
        for sensor in self._sensors:
            sensor.stop()  # stop callbacks before the actor goes away
        ids = [s.id for s in self._sensors] + [a.id for a in self._actors] + self._traffic_ids
        if ids:
            self.client.apply_batch_sync([carla.command.DestroyActor(i) for i in ids], True)
        self._sensors, self._actors, self._traffic_ids = [], [], []

    def close(self) -> None:
        if not hasattr(self, "world"):
            return
        try:
            self._destroy_actors()
            self.tm.set_synchronous_mode(False)
            self.world.apply_settings(release_sync_settings(self.world.get_settings()))
        except RuntimeError:
            pass  # the server is already gone: nothing left to release
