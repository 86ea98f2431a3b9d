"""Follow predicted waypoints: pure pursuit for steering, a PI speed loop for the pedals.

A waypoint head predicts where the car should be, not which pedals to press; this controller
turns those future positions (B, T, 2) in the ego frame (x forward, +y left, metres, ``dt``
seconds apart as recorded by ``trainers_rl.imitation.demos``) into the simulator's actions
``[throttle, steer, brake]``. The vehicle constants default to the embedded simulator's ego car
(``carla_env.sim.vehicles.EgoParams``), so the feed-forward terms match what it will drive.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from carla_env.sim.vehicles import EgoParams

__all__ = ["ControllerConfig", "WaypointController"]

_EGO = EgoParams()


@dataclasses.dataclass
class ControllerConfig:
    """Gains and vehicle constants of ``WaypointController``."""

    waypoint_dt: float = dataclasses.field(
        default=0.5, metadata={"help": "seconds between predicted waypoints (stride * control_dt)"})
    control_dt: float = dataclasses.field(
        default=0.1, metadata={"help": "seconds between calls (model_policy uses the env's)"})
    # Lateral (pure pursuit): the lookahead grows with speed so high speeds do not weave.
    lookahead_min: float = 4.0  # m
    lookahead_time: float = 0.6  # s: lookahead = min + time * speed
    lookahead_max: float = 30.0  # m
    # Longitudinal: target speed from the spacing of the first ``speed_segments`` waypoints.
    speed_segments: int = 2
    kp: float = 1.0  # m/s^2 per m/s of speed error
    ki: float = 0.1  # m/s^2 per m of accumulated error
    integral_limit: float = 10.0  # m: anti-windup bound of the accumulated error
    stop_speed: float = 0.5  # m/s: targets below this mean stand still
    stop_brake: float = 0.3  # brake held at least while told to stand still
    # Vehicle: the embedded simulator's ego car.
    wheelbase: float = _EGO.wheelbase
    rear_axle_to_cg: float = _EGO.rear_axle_to_cg
    max_steer: float = _EGO.max_steer  # rad at the wheels for steer = 1
    max_accel: float = _EGO.max_accel  # m/s^2 at full throttle
    max_brake: float = _EGO.max_brake  # m/s^2 at full brake
    rolling: float = _EGO.rolling  # m/s^2
    drag: float = _EGO.drag  # 1/m

    def __post_init__(self) -> None:
        positive = ("waypoint_dt", "control_dt", "lookahead_min", "wheelbase", "max_steer",
                    "max_accel", "max_brake", "speed_segments")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.lookahead_max < self.lookahead_min:
            raise ValueError(f"lookahead_max ({self.lookahead_max}) must be >= lookahead_min "
                             f"({self.lookahead_min})")
        for name in ("lookahead_time", "kp", "ki", "integral_limit", "stop_speed", "rolling",
                     "drag", "rear_axle_to_cg"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.stop_brake <= 1:
            raise ValueError(f"stop_brake must be in [0, 1], got {self.stop_brake}")


class WaypointController:
    """Batched waypoint follower; keeps one speed integrator per env of the batch."""

    def __init__(self, config: ControllerConfig | None = None) -> None:
        self.config = config or ControllerConfig()
        self._integral = np.zeros(0)

    def reset(self, envs: np.ndarray | None = None) -> None:
        """Forget the accumulated speed error of ``envs`` (a bool mask or indices; all if None)."""
        if envs is None:
            self._integral = np.zeros_like(self._integral)
        else:
            self._integral[envs] = 0.0

    def act(self,
            waypoints: np.ndarray,
            speed: np.ndarray,
            new_episode: np.ndarray | None = None) -> np.ndarray:
        """Actions (B, 3) float32 for waypoints (B, T, 2) and current speeds (B,) in m/s.

        ``new_episode`` marks envs whose episode just began: their integrator starts at zero.
        """
        wp = np.asarray(waypoints, dtype=np.float64)
        v = np.asarray(speed, dtype=np.float64).reshape(-1)
        if wp.ndim != 3 or wp.shape[2] != 2 or wp.shape[1] < 1 or len(wp) != len(v):
            raise ValueError(f"waypoints must be (B, T, 2) and speed (B,), got {wp.shape} and "
                             f"{v.shape}")
        if self._integral.shape != v.shape:
            self._integral = np.zeros_like(v)  # a new batch: nothing to carry over
        elif new_episode is not None:
            self.reset(np.asarray(new_episode))
        steer = self.steer(wp, v)
        throttle, brake = self._pedals(self.target_speed(wp), v)
        return np.stack([throttle, steer, brake], axis=1).astype(np.float32)

    # ------------------------------------------------------------------ lateral
    def lookahead_point(self, waypoints: np.ndarray, speed: np.ndarray) -> np.ndarray:
        """(B, 2): the point ``lookahead`` metres along the path origin -> waypoints."""
        c = self.config
        b = len(waypoints)
        path = np.concatenate([np.zeros((b, 1, 2)), waypoints], axis=1)
        seg = np.linalg.norm(np.diff(path, axis=1), axis=2)  # (B, T)
        cum = np.concatenate([np.zeros((b, 1)), np.cumsum(seg, axis=1)], axis=1)  # (B, T + 1)
        ld = np.clip(c.lookahead_min + c.lookahead_time * speed, c.lookahead_min, c.lookahead_max)
        # A path shorter than the lookahead ends at its last point.
        ld = np.minimum(ld, cum[:, -1])
        i = np.clip((cum[:, 1:] < ld[:, None]).sum(axis=1), 0, seg.shape[1] - 1)  # segment index
        rows = np.arange(b)
        frac = (ld - cum[rows, i]) / np.maximum(seg[rows, i], 1e-9)
        start, end = path[rows, i], path[rows, i + 1]
        return start + np.clip(frac, 0.0, 1.0)[:, None] * (end - start)

    def steer(self, waypoints: np.ndarray, speed: np.ndarray) -> np.ndarray:
        """Pure pursuit steer in [-1, 1]; positive turns left (towards +y), as in the simulator."""
        c = self.config
        target = self.lookahead_point(waypoints, speed)
        # Pure pursuit steers the rear axle, which sits rear_axle_to_cg behind the position the
        # waypoints (and the simulator) track.
        x, y = target[:, 0] + c.rear_axle_to_cg, target[:, 1]
        dist2 = x * x + y * y
        # atan(2 L sin(alpha) / ld) with sin(alpha) = y / ld.
        delta = np.arctan(2.0 * c.wheelbase * y / np.maximum(dist2, 1e-6))
        # A path that goes nowhere (standing still) gives no direction to steer to.
        delta = np.where(np.hypot(target[:, 0], target[:, 1]) < 0.5, 0.0, delta)
        return np.clip(delta / c.max_steer, -1.0, 1.0)

    # ------------------------------------------------------------- longitudinal
    def target_speed(self, waypoints: np.ndarray) -> np.ndarray:
        """(B,) m/s: the mean spacing of the first waypoints over the time between them."""
        c = self.config
        b = len(waypoints)
        k = min(c.speed_segments, waypoints.shape[1])
        path = np.concatenate([np.zeros((b, 1, 2)), waypoints[:, :k]], axis=1)
        seg = np.linalg.norm(np.diff(path, axis=1), axis=2)
        return seg.mean(axis=1) / c.waypoint_dt

    def _pedals(self, target: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c = self.config
        stop = target < c.stop_speed
        target = np.where(stop, 0.0, target)
        error = target - v
        self._integral = np.clip(self._integral + error * c.control_dt, -c.integral_limit,
                                 c.integral_limit)
        # While told to stand still the integrator would only wind up against the brake.
        self._integral = np.where(stop, 0.0, self._integral)
        accel = c.kp * error + c.ki * self._integral
        # Feed-forward: rolling resistance and drag need this much throttle at constant speed.
        force = accel + c.rolling + c.drag * v * v
        throttle = np.clip(force / c.max_accel, 0.0, 1.0)
        brake = np.clip(-force / c.max_brake, 0.0, 1.0)
        throttle = np.where(stop, 0.0, throttle)
        brake = np.where(stop, np.maximum(brake, c.stop_brake), brake)
        return throttle, brake
