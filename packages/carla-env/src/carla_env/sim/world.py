"""The embedded simulator: N driving worlds stepped at once with NumPy.

Each world has one ego car (kinematic bicycle, driven by throttle/steer/brake) and rooms
around it, each its own module with its state as a dataclass of arrays:

- ``traffic``: up to ``max_vehicles`` cars on the route's lanes (IDM following, MOBIL lane
  changes, recycling ahead of the ego), see ``traffic.py``;
- ``cross``: on urban maps, cars crossing the route at signalised junctions,
  see ``cross_traffic.py``;
- ``signals``: the junctions' light cycles, see ``signals.py``.

This module holds the ego and composes the rooms: one ``step`` moves the ego, then traffic,
then cross traffic, then checks the ego's events (collisions, leaving the road, running a red
light, finishing the route). All state has a leading batch axis, so one call steps every
world; nothing loops over worlds.

Randomness comes from a counter-based hash of (episode seed, step, slot, purpose), so a
world's trajectory depends only on its own seed and actions, never on the batch it is in.
"""

from __future__ import annotations

import copy

import numpy as np

from carla_env.sim import counter_rng, cross_traffic, traffic
from carla_env.sim.collision import ego_hits
from carla_env.sim.cross_traffic import CrossTraffic
from carla_env.sim.params import WorldParams
from carla_env.sim.roads import RouteTable, build_routes
from carla_env.sim.signals import (
    RED,
    SIGNAL_CYCLE,
    Signals,
    cross_lights,
    next_stop_line,
    stop_line_as_leader,
)
from carla_env.sim.traffic import Traffic
from carla_env.sim.vehicles import bicycle_step

__all__ = ["SIGNAL_CYCLE", "World", "WorldParams"]

_START_S = 5.0  # metres into its route where the ego starts
# The ego starts at [_START_SPEED_MIN, _START_SPEED_MIN + _START_SPEED_SPREAD) of the limit.
_START_SPEED_MIN, _START_SPEED_SPREAD = 0.3, 0.3
_PROJECTION_WINDOW = np.arange(-3, 9)  # route points searched around last step's nearest
_OFF_ROAD_MARGIN = 0.5  # metres past the outer lanes' edges
_FINISH = 5.0  # an open route is completed this far before its end
# Purposes of counter_rng draws at reset (the rooms use 10 and up).
_DRAW_ROUTE, _DRAW_LANE, _DRAW_SPEED, _DRAW_SIGNAL_OFFSET = 1, 2, 3, 20


def _wrap(angle: np.ndarray) -> np.ndarray:
    return (angle + np.pi) % (2 * np.pi) - np.pi


class World:
    """A batch of ``num_envs`` driving worlds on one map."""

    def __init__(self, params: WorldParams, num_envs: int) -> None:
        self.p = params
        self.n = num_envs
        self.routes: RouteTable = build_routes(params.map)
        self.lanes = params.map.lanes
        self.lane_width = params.map.lane_width
        self.speed_limit = params.map.speed_limit
        n = num_envs
        self.num_junctions = self.routes.junction_s.shape[1]
        f = np.zeros
        # Episode bookkeeping
        self.seed = np.zeros(n, dtype=np.uint64)
        self.steps = np.zeros(n, dtype=np.int64)
        self.time = f(n)
        self.route = np.zeros(n, dtype=np.int64)
        # Ego
        self.x, self.y, self.yaw, self.v = f(n), f(n), f(n), f(n)
        self.s = f(n)  # progress along the route (unwrapped on loops)
        self.d = f(n)  # lateral offset from lane 0's centre
        self.heading_error = f(n)
        self.hint = np.zeros(n, dtype=np.int64)  # nearest route point, for projection
        self.last_action = f((n, 3))
        self.prev_accel = f(n)
        self.jerk = f(n)
        self.lane = np.zeros(n, dtype=np.int64)
        # Rooms
        self.traffic = Traffic.empty(n, params.max_vehicles)
        self.cross = CrossTraffic.empty(n, params.cross_vehicles)
        self.signals = Signals.zeros(n, self.num_junctions)
        # Last step's events, for info
        self.collision = np.zeros(n, dtype=bool)
        self.off_road = np.zeros(n, dtype=bool)
        self.lane_invasion = np.zeros(n, dtype=bool)
        self.red_light = np.zeros(n, dtype=bool)
        self.completed = np.zeros(n, dtype=bool)
        self._version = 0  # bumped whenever state changes; keys the caches below
        self._pose_version = -1
        self._signal_version = -1
        self._signal: tuple[np.ndarray, np.ndarray] = (f(n), np.zeros(n, dtype=np.int64))
        k = params.max_vehicles
        self._pose: tuple[np.ndarray, np.ndarray, np.ndarray] = (f((n, k)), f((n, k)), f((n, k)))

    # ------------------------------------------------------------------ reset
    def reset(self, envs: np.ndarray, seeds: np.ndarray) -> None:
        """Start new episodes in worlds ``envs`` from integer ``seeds``, all at once.

        Every random choice is a hash of (seed, what, slot), so an episode depends on its
        seed alone.
        """
        e = np.asarray(envs, dtype=np.int64)
        if e.size == 0:
            return
        seed = (np.asarray(seeds, dtype=np.int64).astype(np.uint64))
        p, w = self.p, self.lane_width

        def draw(*keys: int | np.ndarray) -> np.ndarray:
            """Each reset world's uniforms for ``keys``: (E, broadcast of keys)."""
            return counter_rng.uniform(*keys, start=seed[:, None])

        # The traffic pose cache stays valid for the other worlds: only the reset ones change,
        # and recomputing theirs alone saves a full to_world over every world after each
        # autoreset (the observation that follows reads all of them).
        pose_was_valid = self._pose_version == self._version
        self._version += 1
        self.seed[e] = seed
        self.steps[e] = 0
        self.time[e] = 0.0
        num_routes = self.routes.num_routes
        route = np.minimum((draw(_DRAW_ROUTE)[:, 0] * num_routes).astype(np.int64), num_routes - 1)
        lane = np.minimum((draw(_DRAW_LANE)[:, 0] * self.lanes).astype(np.int64), self.lanes - 1)
        s0 = np.full(e.size, _START_S)
        x, y, heading = self.routes.to_world(route, s0, lane * w)
        self.route[e] = route
        self.x[e], self.y[e], self.yaw[e] = x, y, heading
        self.v[e] = (_START_SPEED_MIN +
                     _START_SPEED_SPREAD * draw(_DRAW_SPEED)[:, 0]) * self.speed_limit
        self.s[e], self.d[e], self.lane[e] = s0, lane * w, lane
        self.heading_error[e] = 0.0
        self.hint[e] = np.round(s0 / p.map.ds).astype(np.int64)
        self.last_action[e] = 0.0
        self.prev_accel[e] = 0.0
        self.jerk[e] = 0.0
        for flag in (self.collision, self.off_road, self.lane_invasion, self.red_light,
                     self.completed):
            flag[e] = False
        if p.max_vehicles:
            traffic.place(self.traffic, p, e, draw, s0, lane)
            if pose_was_valid:
                for cached, fresh in zip(self._pose,
                                         self.routes.to_world(route[:, None], self.traffic.s[e],
                                                              self.traffic.d[e]),
                                         strict=True):
                    cached[e] = fresh
                self._pose_version = self._version
        self.signals.offset[e] = draw(np.arange(self.num_junctions),
                                      _DRAW_SIGNAL_OFFSET) * SIGNAL_CYCLE
        self.cross.active[e] = False
        if p.cross_vehicles:
            cross_traffic.place(self.cross, p, self.routes, e, route, draw)

    # ------------------------------------------------------------------- step
    def step(self, actions: np.ndarray) -> None:
        """Advance every world by ``control_dt``; ``actions`` is (N, 3) throttle, steer, brake."""
        p = self.p
        throttle, steer, brake = actions[:, 0], actions[:, 1], actions[:, 2]
        x, y, yaw, v = self.x, self.y, self.yaw, self.v
        dt = p.control_dt / p.substeps
        friction = np.full(self.n, p.friction)
        v_before = v
        for _ in range(p.substeps):
            x, y, yaw, v = bicycle_step(x, y, yaw, v, throttle, steer, brake, friction, dt, p.ego)
        accel = (v - v_before) / p.control_dt
        self.jerk = (accel - self.prev_accel) / p.control_dt
        self.prev_accel = accel
        self.x, self.y, self.yaw, self.v = x, y, _wrap(yaw), v
        self.last_action = actions.astype(np.float64, copy=True)
        self._project_ego()
        traffic.step(self.traffic,
                     p,
                     self.s,
                     self.d,
                     self.v,
                     self._period(),
                     self.steps,
                     self.seed,
                     leader_filter=self._stop_line_as_leader if p.cross_vehicles else None)
        if p.cross_vehicles:
            green, yellow = self._cross_lights()
            left = cross_traffic.advance(self.cross, p, green, yellow)
            if left.any():
                cross_traffic.reenter(self.cross, self.routes, self.route, self.s, left, self.steps,
                                      self.seed)
        self.steps += 1
        self._version += 1
        self.time += p.control_dt
        self._check_events()

    def _period(self) -> np.ndarray | None:
        """Each world's route length on a closed route (positions wrap), else None."""
        return self.routes.length[self.route] if self.routes.closed else None

    def _project_ego(self) -> None:
        """Nearest route point in a window around last step's, then the segment projection."""
        rt, ds = self.routes, self.p.map.ds
        npts = rt.num_points
        period = np.round(rt.length[self.route] / ds).astype(np.int64)
        idx = self.hint[:, None] + _PROJECTION_WINDOW
        idx = np.where(rt.closed, np.mod(idx, period[:, None]), np.clip(idx, 0, npts - 1))
        px = rt.xy[self.route[:, None], idx]
        dist2 = (px[..., 0] - self.x[:, None])**2 + (px[..., 1] - self.y[:, None])**2
        best = np.argmin(dist2, axis=1)
        i = idx[np.arange(self.n), best]
        heading = rt.heading[self.route, i]
        dx, dy = self.x - rt.xy[self.route, i, 0], self.y - rt.xy[self.route, i, 1]
        along = dx * np.cos(heading) + dy * np.sin(heading)
        self.d = -dx * np.sin(heading) + dy * np.cos(heading)
        s_local = i * ds + along
        if rt.closed:
            # Unwrapped progress: add the wrapped change since the last step.
            period_len = rt.length[self.route]
            self.s = self.s + (s_local - self.s + period_len / 2) % period_len - period_len / 2
        else:
            self.s = s_local
        self.hint = i
        self.heading_error = _wrap(self.yaw - heading)
        lane = np.clip(np.round(self.d / self.lane_width), 0, self.lanes - 1).astype(np.int64)
        self.lane_invasion = lane != self.lane
        self.lane = lane

    def _next_signal(self, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Distance from route positions ``s`` (N, M) to the next stop line, and its state."""
        return next_stop_line(self.routes.junction_s[self.route], self.signals.offset, self.time, s)

    def _stop_line_as_leader(self, s: np.ndarray, v: np.ndarray, lead_gap: np.ndarray,
                             lead_v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Route traffic at (``s``, ``v``) stops at red lights as behind a car at rest."""
        stop_gap, state = self._next_signal(s)
        return stop_line_as_leader(stop_gap, state, v, lead_gap, lead_v, self.p.idm.comfort_brake)

    def _cross_lights(self) -> tuple[np.ndarray, np.ndarray]:
        """Green and yellow, per cross car, of its junction's cross-street signal."""
        return cross_lights(self.signals.offset, self.cross.junction, self.time)

    def _check_events(self) -> None:
        p, w, ego = self.p, self.lane_width, self.p.ego
        tx, ty, th = self._traffic_pose()
        collision = ego_hits(self.x, self.y, self.yaw, ego.length, ego.width, tx, ty, th,
                             self.traffic.length, self.traffic.width, self.traffic.active)
        if p.cross_vehicles:
            cx, cy, ch = self._cross_poses()
            collision |= ego_hits(self.x, self.y, self.yaw, ego.length, ego.width, cx, cy, ch,
                                  *self.cross.dimensions(), self.cross.active)
        self.collision = collision
        self.off_road = (self.d < -w / 2 - _OFF_ROAD_MARGIN) | (self.d > (self.lanes - 0.5) * w +
                                                                _OFF_ROAD_MARGIN)
        self.off_road |= np.abs(self.heading_error) > np.pi / 2
        # A red light is run when the line falls behind the ego between this step and the next.
        stop_gap, state = self._next_signal(self.s[:, None] + p.control_dt * self.v[:, None])
        crossed = (stop_gap[:, 0] < 0) & (stop_gap[:, 0] > -2.0)
        self.red_light = crossed & (state[:, 0] == RED)
        self.completed = self.s >= self.routes.length[self.route] - _FINISH
        if self.routes.closed:
            self.completed = self.s >= self.p.map.route_length

    # ------------------------------------------------------------- queries
    def subset(self, envs: np.ndarray) -> World:
        """A copy holding only worlds ``envs`` (for observing a few without the rest)."""
        sub = copy.copy(self)
        for name, value in vars(self).items():
            if isinstance(value, np.ndarray) and value.shape[:1] == (self.n,):
                setattr(sub, name, value[envs])
        sub.traffic = self.traffic.take(envs)
        sub.cross = self.cross.take(envs)
        sub.signals = self.signals.take(envs)
        sub.n = len(envs)
        sub._pose_version = -1
        sub._signal_version = -1
        return sub

    def route_length(self) -> np.ndarray:
        if self.routes.closed:
            return np.full(self.n, self.p.map.route_length)
        return self.routes.length[self.route]

    def _traffic_pose(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """World pose of the route traffic, computed once per step."""
        if self._pose_version != self._version:
            self._pose = self.routes.to_world(self.route[:, None], self.traffic.s, self.traffic.d)
            self._pose_version = self._version
        return self._pose

    def _cross_poses(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return cross_traffic.poses(self.cross, self.p, self.routes, self.route)

    def traffic_world(self) -> tuple[np.ndarray, ...]:
        """All other cars in world coordinates: x, y, heading, speed, length, width, active."""
        tx, ty, th = self._traffic_pose()
        t = self.traffic
        parts: list[tuple[np.ndarray, ...]] = [(tx, ty, th, t.v, t.length, t.width, t.active)]
        if self.p.cross_vehicles:
            cx, cy, ch = self._cross_poses()
            parts.append((cx, cy, ch, self.cross.v, *self.cross.dimensions(), self.cross.active))
        return tuple(np.concatenate(arrays, axis=1) for arrays in zip(*parts, strict=True))

    def next_signal(self) -> tuple[np.ndarray, np.ndarray]:
        """Distance to the ego's next stop line and its state (0 green, 1 yellow, 2 red).

        Observations, rendering and the autopilot all ask each step: computed once per step.
        """
        if self._signal_version != self._version:
            gap, state = self._next_signal(self.s[:, None])
            self._signal = (gap[:, 0], state[:, 0])
            self._signal_version = self._version
        return self._signal

    def cross_may_go(self) -> np.ndarray:
        """(N, C): the cross car's signal is green or yellow."""
        green, yellow = self._cross_lights()
        return green | yellow
