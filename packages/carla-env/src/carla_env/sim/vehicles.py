"""Vehicle models, batched over arrays: the ego's kinematic bicycle and IDM for traffic."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

Num = Any  # numpy arrays or Python floats, broadcast together

__all__ = [
    "CAR_LENGTH", "CAR_WIDTH", "GRAVITY", "TRAFFIC_LENGTH_MIN", "TRAFFIC_LENGTH_SPREAD",
    "EgoParams", "IDMParams", "bicycle_step", "idm_acceleration"
]

GRAVITY = 9.81
# Other cars' bodies, in metres. Route traffic draws its length per car from
# [TRAFFIC_LENGTH_MIN, TRAFFIC_LENGTH_MIN + TRAFFIC_LENGTH_SPREAD) so queues do not look
# cloned; cross traffic (and a traffic slot before its first reset) is CAR_LENGTH long. Every
# other car is CAR_WIDTH wide. The ego's own size is EgoParams'.
CAR_LENGTH = 4.5
CAR_WIDTH = 1.9
TRAFFIC_LENGTH_MIN = 4.0
TRAFFIC_LENGTH_SPREAD = 1.0


@dataclasses.dataclass(frozen=True)
class EgoParams:
    """A mid-size car: dimensions, actuator limits, resistance."""

    length: float = 4.6
    width: float = 1.9
    wheelbase: float = 2.8
    rear_axle_to_cg: float = 1.4
    max_steer: float = 0.6  # rad at the wheels for steer = +-1
    max_accel: float = 4.0  # m/s^2 at full throttle
    max_brake: float = 8.0  # m/s^2 at full brake on a dry road
    max_speed: float = 45.0
    drag: float = 0.0008  # per metre: a_drag = drag * v^2
    rolling: float = 0.15  # m/s^2


@dataclasses.dataclass(frozen=True)
class IDMParams:
    """Intelligent Driver Model (Treiber et al., 2000) parameters for traffic."""

    max_accel: float = 1.5
    comfort_brake: float = 2.0
    time_headway: float = 1.2
    min_gap: float = 2.5
    delta: float = 4.0
    max_brake: float = 8.0


def bicycle_step(x: Num, y: Num, yaw: Num, v: Num, throttle: Num, steer: Num, brake: Num,
                 friction: Num, dt: float, p: EgoParams) -> tuple[Num, ...]:
    """One step of the kinematic bicycle model, in place of arrays of any shape.

    Friction limits traction (acceleration and braking) and lateral acceleration: past
    ``friction * g`` the yaw rate saturates, which is how a car understeers on a wet road.
    """
    grip = friction * GRAVITY
    accel = throttle * p.max_accel - brake * p.max_brake - p.rolling - p.drag * v * v
    accel = np.clip(accel, -np.minimum(p.max_brake, grip), np.minimum(p.max_accel, grip))
    delta = steer * p.max_steer
    beta = np.arctan(p.rear_axle_to_cg / p.wheelbase * np.tan(delta))
    yaw_rate = v / p.rear_axle_to_cg * np.sin(beta)
    limit = grip / np.maximum(v, 1.0)
    yaw_rate = np.clip(yaw_rate, -limit, limit)
    heading = yaw + beta
    x = x + v * np.cos(heading) * dt
    y = y + v * np.sin(heading) * dt
    yaw = yaw + yaw_rate * dt
    v = np.clip(v + accel * dt, 0.0, p.max_speed)
    return x, y, yaw, v


def idm_acceleration(v: Num, v0: Num, gap: Num, leader_v: Num, p: IDMParams) -> Num:
    """IDM acceleration for speed ``v`` towards ``v0``, ``gap`` metres behind a leader.

    ``gap`` is bumper to bumper; ``np.inf`` means a free road.
    """
    dv = v - leader_v
    s_star = p.min_gap + np.maximum(
        0.0, v * p.time_headway + v * dv / (2.0 * np.sqrt(p.max_accel * p.comfort_brake)))
    free = 1.0 - (v / np.maximum(v0, 0.1))**p.delta
    interaction = (s_star / np.maximum(gap, 0.1))**2
    return np.maximum(p.max_accel * (free - interaction), -p.max_brake)
