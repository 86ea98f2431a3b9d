"""The expert driver of the embedded simulator: lane tracking with feed-forward, IDM for speed.

It reads the simulator's state (which a policy never sees whole) and returns throttle,
steer and brake for every world in the batch. It keeps its lane, slows for curves, follows
the car ahead with IDM, stops at red lights and yields to cross traffic inside a junction.
Use it for demonstrations and as the baseline policies are compared with.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from carla_env.sim.signals import RED, YELLOW
from carla_env.sim.traffic import wrap_gap
from carla_env.sim.vehicles import GRAVITY, IDMParams, idm_acceleration
from carla_env.sim.world import World

__all__ = ["Autopilot", "AutopilotParams"]


@dataclasses.dataclass(frozen=True)
class AutopilotParams:
    speed_fraction: float = 0.9  # of the speed limit
    lateral_accel: float = 2.5  # m/s^2 allowed in curves on a dry road
    idm: IDMParams = dataclasses.field(default_factory=lambda: IDMParams(
        max_accel=2.0, comfort_brake=3.0, time_headway=1.5, min_gap=4.0, max_brake=8.0))


class Autopilot:
    """Batched expert for a ``World``."""

    def __init__(self, world: World, params: AutopilotParams | None = None) -> None:
        self.world = world
        self.params = params or AutopilotParams()
        self.lane = world.lane.copy()

    def act(self) -> np.ndarray:
        """Actions (N, 3) for the worlds' current state."""
        w, p = self.world, self.params
        ego = w.p.ego
        # Each episode keeps the lane it started in.
        fresh = w.steps == 0
        self.lane = np.where(fresh, w.lane, self.lane)
        lane_d = self.lane * w.lane_width
        # Lateral: curvature feed-forward plus Stanley-style heading and offset feedback.
        _, _, _, kappa_ref = w.routes.frame(w.route, w.s + 0.5 * w.v * w.p.control_dt)
        kappa_here = kappa_ref / (1.0 - lane_d * kappa_ref)  # the lane's own curvature
        offset = w.d - lane_d
        delta = (np.arctan(ego.wheelbase * kappa_here) - w.heading_error - np.arctan(0.9 * offset /
                                                                                     (w.v + 2.0)))
        steer = np.clip(delta / ego.max_steer, -1.0, 1.0)

        # Longitudinal: desired speed from the limit and the curvature ahead.
        v_des = np.full(w.n, p.speed_fraction * w.speed_limit)
        grip = p.lateral_accel * w.p.friction
        for ahead in (5.0, 15.0, 30.0, 50.0):
            _, _, _, kappa = w.routes.frame(w.route, w.s + ahead)
            v_curve = np.sqrt(grip / np.maximum(np.abs(kappa), 1e-4))
            # Leave room to slow down before the curve.
            v_des = np.minimum(v_des, np.sqrt(v_curve**2 + 2 * 1.5 * ahead))
        gap, lead_v = self._leader(lane_d)
        acc = idm_acceleration(w.v, v_des, gap, lead_v, p.idm)
        force = acc + ego.rolling + ego.drag * w.v * w.v
        brake_limit = min(ego.max_brake, GRAVITY * w.p.friction)
        throttle = np.clip(force / ego.max_accel, 0.0, 1.0)
        brake = np.clip(-force / ego.max_brake, 0.0, brake_limit / ego.max_brake)
        return np.stack([throttle, steer, brake], axis=1).astype(np.float32)

    def _leader(self, lane_d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Bumper gap and speed of whatever the ego must follow or stop for."""
        w = self.world
        cars = w.traffic
        period = w.routes.length[w.route][:, None] if w.routes.closed else None
        rel = wrap_gap(cars.s - w.s[:, None], period)
        near_lane = (np.abs(cars.d - lane_d[:, None])
                     < 0.8 * w.lane_width) | (cars.lane * w.lane_width == lane_d[:, None])
        gaps = np.where(cars.active & near_lane & (rel > 0),
                        rel - (cars.length + w.p.ego.length) / 2, np.inf)
        j = np.argmin(gaps, axis=1) if gaps.shape[1] else np.zeros(w.n, dtype=np.int64)
        gap = gaps[np.arange(w.n), j] if gaps.shape[1] else np.full(w.n, np.inf)
        lead_v = cars.v[np.arange(w.n), j] if gaps.shape[1] else np.zeros(w.n)
        if not w.p.cross_vehicles:
            return gap, lead_v
        stop_gap, state = w.next_signal()
        # Stop front bumper at the line.
        stop_gap = stop_gap - w.p.ego.length / 2
        stoppable = stop_gap > w.v * w.v / (2 * 4.0)
        stop = (state == RED) | ((state == YELLOW) & stoppable)
        stop |= self._cross_conflict(stop_gap) & (stop_gap > -1.0)
        stop &= stop_gap > -1.0
        gap_sig = np.where(stop, np.maximum(stop_gap, 0.0), np.inf)
        closer = gap_sig < gap
        return np.where(closer, gap_sig, gap), np.where(closer, 0.0, lead_v)

    def _cross_conflict(self, stop_gap: np.ndarray) -> np.ndarray:
        """A cross car is in, or about to enter, the junction the ego approaches."""
        w = self.world
        js = w.routes.junction_s[w.route]
        junction = np.argmin(np.where(js - w.s[:, None] > -3.0, js, np.inf), axis=1)
        half = w.lanes * w.lane_width / 2
        cross = w.cross
        at_junction = cross.active & (cross.junction == junction[:, None])
        # Past its stop line (which is half + 5.5 m out) and not yet clear of the route.
        inside = (cross.q > -(half + 3.0)) & (cross.q < half + 3.0)
        coming = (cross.v > 1.0) & (cross.q > -(half + 25.0)) & (cross.q < half + 3.0)
        coming &= w.cross_may_go()
        return (at_junction & (inside | coming)).any(axis=1) & (stop_gap < 40.0)
