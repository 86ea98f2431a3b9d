"""The embedded simulator: N driving worlds stepped at once with NumPy.

Each world has one ego car (kinematic bicycle, driven by throttle/steer/brake), up to
``max_vehicles`` traffic cars on its route's lanes (IDM with MOBIL lane changes), and on urban
maps cross traffic at signalised intersections. All state lives in arrays with a leading
batch axis, so one call steps every world; nothing loops over worlds except resets.

Randomness during an episode comes from a counter-based hash of (episode seed, step, slot),
so a world's trajectory depends only on its own seed and actions, never on the batch it is in.
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np

from carla_env.sim import counter_rng
from carla_env.sim.collision import boxes_overlap
from carla_env.sim.roads import MapSpec, RouteTable, build_routes
from carla_env.sim.vehicles import EgoParams, IDMParams, bicycle_step, idm_acceleration

__all__ = ["SIGNAL_CYCLE", "World", "WorldParams"]

# Signal cycle (seconds), as seen from the route: green, yellow, all-red, cross green,
# cross yellow, all-red.
SIGNAL_CYCLE = 24.0
_ROUTE_GREEN, _ROUTE_YELLOW, _CROSS_START, _CROSS_GREEN_END, _CROSS_YELLOW_END = (10.0, 13.0, 14.0,
                                                                                  21.0, 23.0)
STOP_OFFSET = 11.0  # stop line: metres before a junction's centre along the route
BOX_HALF = 9.0  # the junction box spans centre +- this along the route
_CROSS_STOP = 5.5  # cross traffic stops this far from the route's reference line
# Cross cars live within half a block of their junction: the grid's other streets are a
# block away, so a cross street never overlaps another part of the route.
_CROSS_SPAWN = 38.0
_CROSS_EXIT = 30.0
_LANE_CHANGE_SPEED = 1.2  # m/s of lateral motion during a lane change
_MOBIL_PERIOD = 10  # steps between a car's lane-change decisions
_MOBIL_POLITENESS = 0.3
_MOBIL_THRESHOLD = 0.2
_MOBIL_KEEP_RIGHT = 0.15
_MOBIL_SAFE_BRAKE = 4.0
_VIEW_BEHIND, _VIEW_AHEAD = 80.0, 260.0


@dataclasses.dataclass(frozen=True)
class WorldParams:
    """Everything the simulator needs, resolved from a ``SimulatorConfig``."""

    map: MapSpec
    control_dt: float = 0.1
    substeps: int = 10
    max_vehicles: int = 16
    cross_vehicles: int = 0
    density_per_km_lane: float = 12.0
    friction: float = 1.0
    ego: EgoParams = dataclasses.field(default_factory=EgoParams)
    idm: IDMParams = dataclasses.field(default_factory=IDMParams)


def _uniform(seed: np.ndarray, *keys: int | np.ndarray) -> np.ndarray:
    """A world's draw for ``keys``: its episode seed starts the counter hash."""
    return counter_rng.uniform(*keys, start=seed)


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
        n, k, c = num_envs, params.max_vehicles, params.cross_vehicles
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
        # Traffic on the route (Frenet)
        self.ts, self.td, self.tv = f((n, k)), f((n, k)), f((n, k))
        self.tv0, self.tlen, self.twid = f((n, k)), np.full((n, k), 4.5), np.full((n, k), 1.9)
        self.tlane = np.zeros((n, k), dtype=np.int64)
        self.tactive = np.zeros((n, k), dtype=bool)
        # Cross traffic at junctions: junction index, travel coordinate q, direction sign
        self.cj = np.zeros((n, c), dtype=np.int64)
        self.cq, self.cv = f((n, c)), f((n, c))
        self.csign = np.ones((n, c))
        self.cactive = np.zeros((n, c), dtype=bool)
        self.signal_offset = f((n, self.num_junctions))
        # Last step's events, for info
        self.collision = np.zeros(n, dtype=bool)
        self.off_road = np.zeros(n, dtype=bool)
        self.lane_invasion = np.zeros(n, dtype=bool)
        self.red_light = np.zeros(n, dtype=bool)
        self.completed = np.zeros(n, dtype=bool)
        self._version = 0  # bumped whenever state changes; keys the pose cache
        self._pose_version = -1
        self._signal_version = -1
        self._signal: tuple[np.ndarray, np.ndarray] = (f(n), np.zeros(n, dtype=np.int64))
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
        p, w, k = self.p, self.lane_width, self.p.max_vehicles
        u = lambda *keys: _uniform(seed[:, None], *keys)  # noqa: E731
        self._version += 1
        self.seed[e] = seed
        self.steps[e] = 0
        self.time[e] = 0.0
        route = np.minimum((u(1)[:, 0] * self.routes.num_routes).astype(np.int64),
                           self.routes.num_routes - 1)
        lane = np.minimum((u(2)[:, 0] * self.lanes).astype(np.int64), self.lanes - 1)
        s0 = np.full(e.size, 5.0)
        x, y, heading = self.routes.to_world(route, s0, lane * w)
        self.route[e] = route
        self.x[e], self.y[e], self.yaw[e] = x, y, heading
        self.v[e] = (0.3 + 0.3 * u(3)[:, 0]) * self.speed_limit
        self.s[e], self.d[e], self.lane[e] = s0, lane * w, lane
        self.heading_error[e] = 0.0
        self.hint[e] = np.round(s0 / p.map.ds).astype(np.int64)
        self.last_action[e] = 0.0
        self.prev_accel[e] = 0.0
        self.jerk[e] = 0.0
        for flag in (self.collision, self.off_road, self.lane_invasion, self.red_light,
                     self.completed):
            flag[e] = False
        if k:
            slots = np.arange(k)
            span = 0.5 * _VIEW_BEHIND + _VIEW_AHEAD
            expected = p.density_per_km_lane * self.lanes * span / 1000.0
            ts = s0[:, None] - 0.5 * _VIEW_BEHIND + (slots + 0.1 + 0.8 * u(slots, 11)) * span / k
            tl = np.minimum((u(slots, 12) * self.lanes).astype(np.int64), self.lanes - 1)
            active = u(slots, 10) < min(1.0, expected / k)
            active &= ~((tl == lane[:, None]) & (np.abs(ts - s0[:, None]) < 25.0))
            # Keep 14 m between cars of a lane: a car too close to an earlier slot stays out.
            close = (tl[:, :, None] == tl[:, None, :]) & (np.abs(ts[:, :, None] - ts[:, None, :])
                                                          < 14.0)
            close &= active[:, None, :] & (slots[None, :] < slots[:, None])[None]
            active &= ~close.any(axis=2)
            self.ts[e], self.tlane[e], self.td[e] = ts, tl, tl * w
            self.tv0[e] = (0.65 + 0.3 * u(slots, 13)) * self.speed_limit
            self.tv[e] = 0.8 * self.tv0[e]
            self.tlen[e] = 4.0 + u(slots, 14)
            self.tactive[e] = active
        self.signal_offset[e] = u(np.arange(self.num_junctions), 20) * SIGNAL_CYCLE
        self.cactive[e] = False
        if p.cross_vehicles:
            # Cross traffic runs at straight-through junctions, where it crosses the route.
            straight = self.routes.junction_straight[route]  # (E, I)
            count = straight.sum(axis=1)
            order = np.argsort(~straight, axis=1, kind="stable")
            slots = np.arange(p.cross_vehicles)
            pick = slots[None, :] % np.maximum(count, 1)[:, None]
            self.cj[e] = np.take_along_axis(order, pick, axis=1)
            self.csign[e] = np.where(u(slots, 21) < 0.5, 1.0, -1.0)
            self.cq[e] = -(10.0 + (_CROSS_SPAWN - 10.0) * u(slots, 22))
            self.cv[e] = 8.0
            self.cactive[e] = (count > 0)[:, None]

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
        self._step_traffic()
        if p.cross_vehicles:
            self._step_cross()
        self.steps += 1
        self._version += 1
        self.time += p.control_dt
        self._check_events()

    def _project_ego(self) -> None:
        """Nearest route point in a window around last step's, then the segment projection."""
        rt, ds = self.routes, self.p.map.ds
        offsets = np.arange(-3, 9)
        npts = rt.num_points
        period = np.round(rt.length[self.route] / ds).astype(np.int64)
        idx = self.hint[:, None] + offsets
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

    def _gap_matrix(self, s: np.ndarray) -> np.ndarray:
        """Signed distance along the route from each car (rows) to each other car (cols)."""
        gap = s[:, None, :] - s[:, :, None]
        if self.routes.closed:
            period = self.routes.length[self.route][:, None, None]
            gap = (gap + period / 2) % period - period / 2
        return gap

    def _step_traffic(self) -> None:
        p, w = self.p, self.lane_width
        n, k = self.n, p.max_vehicles
        if k == 0:
            return
        # Agents: traffic slots, then the ego as an obstacle (it follows no one here).
        # Pairwise matrices are float32: they are the hot path, and centimetres suffice.
        f32 = np.float32
        s = np.concatenate([self.ts, self.s[:, None]], axis=1).astype(f32)
        d = np.concatenate([self.td, self.d[:, None]], axis=1).astype(f32)
        v = np.concatenate([self.tv, self.v[:, None]], axis=1).astype(f32)
        length = np.concatenate([self.tlen, np.full((n, 1), p.ego.length)], axis=1).astype(f32)
        active = np.concatenate([self.tactive, np.ones((n, 1), dtype=bool)], axis=1)
        centre = self._gap_matrix(s)
        ahead = (centre > 0) & active[:, None, :]
        np.einsum("nii->ni", ahead)[...] = False
        gap = centre - 0.5 * (length[:, :, None] + length[:, None, :])

        def leader(lane: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            in_lane = np.abs(d[:, None, :] - (lane * w).astype(f32)[..., None]) < f32(0.75 * w)
            g = np.where(ahead[:, :k] & in_lane, gap[:, :k], f32(np.inf))
            j = np.argmin(g, axis=-1)
            lead_gap = np.take_along_axis(g, j[..., None], -1)[..., 0]
            return lead_gap.astype(np.float64), np.take_along_axis(v, j, -1).astype(np.float64)

        lead_gap, lead_v = leader(self.tlane)
        lead_gap, lead_v = self._signal_obstacle(self.ts, self.tv, lead_gap, lead_v)
        acc = idm_acceleration(self.tv, self.tv0, lead_gap, lead_v, p.idm)

        # MOBIL, for a rotating tenth of the cars each step.
        decide = self.tactive & ((self.steps[:, None] + np.arange(k)) % _MOBIL_PERIOD == 0)
        decide &= np.abs(self.td - self.tlane * w) < 0.1
        if self.lanes > 1 and decide.any():
            self._mobil(decide, s, d, v, gap, ahead, acc)

        self.tv = np.clip(self.tv + acc * p.control_dt, 0.0, None)
        self.ts = self.ts + self.tv * p.control_dt
        target = self.tlane * w
        self.td = self.td + np.clip(target - self.td, -_LANE_CHANGE_SPEED * p.control_dt,
                                    _LANE_CHANGE_SPEED * p.control_dt)
        self._recycle_traffic()

    def _mobil(self, decide: np.ndarray, s: np.ndarray, d: np.ndarray, v: np.ndarray,
               gap: np.ndarray, ahead: np.ndarray, acc: np.ndarray) -> None:
        """MOBIL (Kesting et al., 2007): change lane when it helps, unless it is unsafe."""
        p, w, k = self.p, self.lane_width, self.p.max_vehicles
        ne, ke = np.nonzero(decide)
        g = gap[ne, ke]  # (M, K+1): from the deciding car to everyone
        g_back = gap[ne, :, ke]  # from everyone to the deciding car
        act = ahead[ne, ke]
        dd, vv = d[ne], v[ne]
        best_gain = np.full(ne.shape, -np.inf)
        best_lane = self.tlane[ne, ke].copy()
        for side in (-1, 1):
            lane = self.tlane[ne, ke] + side
            valid = (lane >= 0) & (lane < self.lanes)
            in_lane = np.abs(dd - lane[:, None] * w) < 0.75 * w
            lead = np.where(act & in_lane, g, np.inf)
            lead[np.arange(len(ke)), ke] = np.inf
            jl = np.argmin(lead, axis=1)
            lead_gap = lead[np.arange(len(ke)), jl]
            behind = np.where(in_lane & (g_back > 0), g_back, np.inf)
            behind[np.arange(len(ke)), ke] = np.inf
            jf = np.argmin(behind, axis=1)
            follow_gap = behind[np.arange(len(ke)), jf]
            has_follower = np.isfinite(follow_gap)
            me_v, my_v0 = self.tv[ne, ke], self.tv0[ne, ke]
            new_acc = idm_acceleration(me_v, my_v0, lead_gap, vv[np.arange(len(ke)), jl], p.idm)
            fv = vv[np.arange(len(ke)), jf]
            f_v0 = np.where(jf < k, self.tv0[ne, np.minimum(jf, k - 1)], fv)
            f_new = idm_acceleration(fv, f_v0, follow_gap, me_v, p.idm)
            f_old = idm_acceleration(fv, f_v0, np.inf, fv, p.idm)
            # Nobody alongside: every car in the target lane is clear ahead or behind.
            rows = np.arange(len(ke))
            centre = g + 0.5 * (self.tlen[ne, ke][:, None] + np.where(
                np.arange(g.shape[1]) < k,
                self.tlen[ne][:, np.minimum(np.arange(g.shape[1]), k - 1)], p.ego.length))
            alongside = in_lane & (np.abs(centre) < 0.5 * (self.tlen[ne, ke][:, None] + 4.6) + 3.0)
            alongside[rows, ke] = False
            safe = ~has_follower | (f_new > -_MOBIL_SAFE_BRAKE)
            safe &= (lead_gap > 2.0) & (follow_gap > 2.0) & ~alongside.any(axis=1)
            gain = new_acc - acc[ne,
                                 ke] + _MOBIL_POLITENESS * np.where(has_follower &
                                                                    (jf < k), f_new - f_old, 0.0)
            gain += _MOBIL_KEEP_RIGHT * (-side)
            ok = valid & safe & (gain > _MOBIL_THRESHOLD) & (gain > best_gain)
            best_gain = np.where(ok, gain, best_gain)
            best_lane = np.where(ok, lane, best_lane)
        self.tlane[ne, ke] = best_lane

    def _signal_obstacle(self, s: np.ndarray, v: np.ndarray, gap: np.ndarray,
                         lead_v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Treat a red (or stoppable yellow) stop line ahead as a standing leader."""
        if not self.p.cross_vehicles:
            return gap, lead_v
        stop_gap, state = self._next_signal(s)
        stoppable = stop_gap > v * v / (2 * self.p.idm.comfort_brake) * 0.5
        must_stop = (state == 2) | ((state == 1) & stoppable)
        gap_sig = np.where(must_stop & (stop_gap > -1.0), np.maximum(stop_gap, 0.0), np.inf)
        closer = gap_sig < gap
        return np.where(closer, gap_sig, gap), np.where(closer, 0.0, lead_v)

    def _next_signal(self, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Distance from ``s`` (N, M) to the next stop line, and its state for the route.

        State: 0 green (or no junction ahead), 1 yellow, 2 red.
        """
        js = self.routes.junction_s[self.route]  # (N, I)
        stop = js - STOP_OFFSET
        dist = stop[:, None, :] - s[..., None]
        dist = np.where(dist > -2.0, dist, np.inf)
        j = np.argmin(dist, axis=-1)
        gap = np.take_along_axis(dist, j[..., None], -1)[..., 0]
        phase = np.mod(self.time[:, None] + np.take_along_axis(self.signal_offset, j, -1),
                       SIGNAL_CYCLE)
        state = np.where(phase < _ROUTE_GREEN, 0, np.where(phase < _ROUTE_YELLOW, 1, 2))
        return gap, np.where(np.isfinite(gap), state, 0)

    def _recycle_traffic(self) -> None:
        """Cars that fell far behind or ahead reappear ahead, so traffic density holds."""
        rel = self.ts - self.s[:, None]
        if self.routes.closed:
            period = self.routes.length[self.route][:, None]
            rel = (rel + period / 2) % period - period / 2
        gone = self.tactive & ((rel < -_VIEW_BEHIND) | (rel > _VIEW_AHEAD + 40))
        if not gone.any():
            return
        ne, ke = np.nonzero(gone)
        u = _uniform(self.seed[ne], self.steps[ne], ke, 1)
        lane = np.minimum((u * self.lanes).astype(np.int64), self.lanes - 1)
        new_s = self.s[ne] + _VIEW_AHEAD - 30.0 * _uniform(self.seed[ne], self.steps[ne], ke, 2)
        # Keep 15 m from any car already in that lane.
        rel_all = self.ts[ne] - new_s[:, None]
        same = self.tactive[ne] & (self.tlane[ne] == lane[:, None])
        clear = ~(same & (np.abs(rel_all) < 15.0)).any(axis=1)
        self.ts[ne, ke] = np.where(clear, new_s, self.ts[ne, ke])
        self.tlane[ne, ke] = np.where(clear, lane, self.tlane[ne, ke])
        self.td[ne, ke] = np.where(clear, lane * self.lane_width, self.td[ne, ke])
        self.tv[ne, ke] = np.where(clear, 0.8 * self.tv0[ne, ke], self.tv[ne, ke])
        self.tactive[ne, ke] = clear

    def _cross_positions(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """World x, y, heading of every cross-traffic car."""
        r = self.route[:, None]
        centre = self.routes.junction_xy[r, self.cj]  # (N, C, 2)
        direction = self.routes.junction_dir[r, self.cj] * self.csign[..., None]
        right = np.stack([direction[..., 1], -direction[..., 0]], axis=-1)
        # The cross street's centre line sits on the route street's centre line.
        mid = (self.lanes - 1) * self.lane_width / 2
        xy = centre + direction * (self.cq + self.csign * mid)[..., None]
        xy = xy + right * (self.lane_width / 2)
        return xy[..., 0], xy[..., 1], np.arctan2(direction[..., 1], direction[..., 0])

    def _cross_phase(self) -> tuple[np.ndarray, np.ndarray]:
        """Green and yellow, per cross car, of its junction's cross-street signal."""
        phase = np.mod(self.time[:, None] + np.take_along_axis(self.signal_offset, self.cj, 1),
                       SIGNAL_CYCLE)
        green = (phase >= _CROSS_START) & (phase < _CROSS_GREEN_END)
        yellow = (phase >= _CROSS_GREEN_END) & (phase < _CROSS_YELLOW_END)
        return green, yellow

    def cross_may_go(self) -> np.ndarray:
        """(N, C): the cross car's signal is green or yellow."""
        green, yellow = self._cross_phase()
        return green | yellow

    def _step_cross(self) -> None:
        p = self.p
        green, yellow = self._cross_phase()
        half_road = self.lanes * self.lane_width / 2
        stop_gap = -(half_road + _CROSS_STOP) - self.cq
        stoppable = stop_gap > self.cv * self.cv / (2 * p.idm.comfort_brake) * 0.5
        must_stop = (~green & ~yellow) | (yellow & stoppable)
        gap = np.where(must_stop & (stop_gap > -1.0), np.maximum(stop_gap, 0.0), np.inf)
        # Follow the cross car ahead on the same junction and direction.
        same = (self.cj[:, :, None] == self.cj[:, None, :]) & (
            self.csign[:, :, None] == self.csign[:, None, :]) & self.cactive[:, None, :]
        ahead = self.cq[:, None, :] - self.cq[:, :, None] - 4.5
        ahead = np.where(same & (ahead > -4.0), ahead, np.inf)
        np.einsum("nii->ni", ahead)[...] = np.inf
        car_gap = ahead.min(axis=2)
        car_v = np.take_along_axis(self.cv, np.argmin(ahead, axis=2), 1)
        lead_v = np.where(car_gap < gap, car_v, 0.0)
        gap = np.minimum(gap, car_gap)
        acc = idm_acceleration(self.cv, np.full_like(self.cv, 10.0), gap, lead_v, p.idm)
        self.cv = np.clip(self.cv + acc * p.control_dt, 0.0, None)
        self.cq = self.cq + self.cv * p.control_dt
        done = self.cactive & (self.cq > _CROSS_EXIT)
        if done.any():
            self._respawn_cross(done)

    def _respawn_cross(self, done: np.ndarray) -> None:
        """A cross car that left re-enters at the next junction ahead of the ego."""
        ne, ce = np.nonzero(done)
        js = self.routes.junction_s[self.route[ne]]
        ahead = (js > self.s[ne, None] + 5.0) & self.routes.junction_straight[self.route[ne]]
        nxt = np.argmax(ahead, axis=1)
        valid = ahead[np.arange(len(ne)), nxt]
        u = _uniform(self.seed[ne], self.steps[ne], ce, 3)
        later = ahead & (np.arange(js.shape[1]) > nxt[:, None])
        second = np.argmax(later, axis=1)
        pick = np.where((u > 0.6) & later[np.arange(len(ne)), second], second, nxt)
        self.cj[ne, ce] = pick
        self.csign[ne,
                   ce] = np.where(_uniform(self.seed[ne], self.steps[ne], ce, 4) < 0.5, 1.0, -1.0)
        self.cq[ne, ce] = -_CROSS_SPAWN
        self.cv[ne, ce] = 8.0
        self.cactive[ne, ce] = valid

    def _check_events(self) -> None:
        p, w = self.p, self.lane_width
        tx, ty, th = self._traffic_pose()
        collision = self._hits(tx, ty, th, self.tlen, self.twid, self.tactive)
        if p.cross_vehicles:
            cx, cy, ch = self._cross_positions()
            collision |= self._hits(cx, cy, ch, np.full(cx.shape, 4.5), np.full(cx.shape, 1.9),
                                    self.cactive)
        self.collision = collision
        self.off_road = (self.d < -w / 2 - 0.5) | (self.d > (self.lanes - 0.5) * w + 0.5)
        self.off_road |= np.abs(self.heading_error) > np.pi / 2
        stop_gap, state = self._next_signal(self.s[:, None] + p.control_dt * self.v[:, None])
        crossed = (stop_gap[:, 0] < 0) & (stop_gap[:, 0] > -2.0)
        self.red_light = crossed & (state[:, 0] == 2)
        self.completed = self.s >= self.routes.length[self.route] - 5.0
        if self.routes.closed:
            self.completed = self.s >= self.p.map.route_length

    def _hits(self, x: np.ndarray, y: np.ndarray, heading: np.ndarray, length: np.ndarray,
              width: np.ndarray, active: np.ndarray) -> np.ndarray:
        """Whether the ego overlaps any of these cars; exact test only for cars close by."""
        ego = self.p.ego
        reach = 0.5 * (np.hypot(ego.length, ego.width) + np.hypot(length, width))
        near = active & ((x - self.x[:, None])**2 + (y - self.y[:, None])**2 < reach * reach)
        hit = np.zeros(self.n, dtype=bool)
        ne, ke = np.nonzero(near)
        if ne.size:
            overlap = boxes_overlap(self.x[ne], self.y[ne], self.yaw[ne], ego.length, ego.width,
                                    x[ne, ke], y[ne, ke], heading[ne, ke], length[ne, ke],
                                    width[ne, ke])
            hit[ne[overlap]] = True
        return hit

    # ------------------------------------------------------------- queries
    def subset(self, envs: np.ndarray) -> World:
        """A copy holding only worlds ``envs`` (for observing a few without the rest)."""
        sub = copy.copy(self)
        for name, value in vars(self).items():
            if isinstance(value, np.ndarray) and value.shape[:1] == (self.n,):
                setattr(sub, name, value[envs])
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
            self._pose = self.routes.to_world(self.route[:, None], self.ts, self.td)
            self._pose_version = self._version
        return self._pose

    def traffic_world(self) -> tuple[np.ndarray, ...]:
        """All other cars in world coordinates: x, y, heading, speed, length, width, active."""
        tx, ty, th = self._traffic_pose()
        parts: list[tuple[np.ndarray,
                          ...]] = [(tx, ty, th, self.tv, self.tlen, self.twid, self.tactive)]
        if self.p.cross_vehicles:
            cx, cy, ch = self._cross_positions()
            full = np.full(cx.shape, 4.5), np.full(cx.shape, 1.9)
            parts.append((cx, cy, ch, self.cv, *full, self.cactive))
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
