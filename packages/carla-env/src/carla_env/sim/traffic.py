"""Traffic on the route's lanes: IDM car following, MOBIL lane changes, recycling.

Each world has ``max_vehicles`` slots of cars in route (Frenet) coordinates: ``s`` along its
route, ``d`` across it (0 is lane 0's centre, lanes count up to the left). Cars exist only in
a window around the ego, from ``VIEW_BEHIND`` behind to ``VIEW_AHEAD`` ahead: one that drops
out of it is recycled ahead of the ego, so a fixed number of slots keeps the ego in traffic
of the configured density for a whole route.

Every step is one set of array operations over (worlds, cars, cars): a car's leader is the
nearest car ahead in its lane among all the world's cars and the ego; the ego is an obstacle
here, never a follower (its own controls come from the policy).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from carla_env.sim import counter_rng
from carla_env.sim.batched import take_worlds
from carla_env.sim.params import WorldParams
from carla_env.sim.vehicles import (
    CAR_LENGTH,
    CAR_WIDTH,
    TRAFFIC_LENGTH_MIN,
    TRAFFIC_LENGTH_SPREAD,
    idm_acceleration,
)

__all__ = ["VIEW_AHEAD", "VIEW_BEHIND", "Traffic", "place", "step", "wrap_gap"]

VIEW_BEHIND, VIEW_AHEAD = 80.0, 260.0  # metres of route around the ego that hold traffic
# A car is in a lane when its centre is within this many lane widths of the lane's centre
# (so a car changing lanes counts in both for a while).
_IN_LANE = 0.75
# Placement at an episode's start, in metres: not beside or just ahead of the ego in its
# lane, and never two cars of a lane this close.
_START_EGO_CLEARANCE = 25.0
_START_SPACING = 14.0
# Desired speeds are drawn from [_DESIRED_MIN, _DESIRED_MIN + _DESIRED_SPREAD) of the limit;
# a car placed or recycled starts at _START_SPEED of its desired speed.
_DESIRED_MIN, _DESIRED_SPREAD = 0.65, 0.3
_START_SPEED = 0.8
# Recycling: a car this far beyond VIEW_AHEAD (or past VIEW_BEHIND) is taken out and put back
# up to _RECYCLE_SPREAD before VIEW_AHEAD, if no car of its new lane is within
# _RECYCLE_CLEARANCE (else the slot stays empty until it is tried again).
_RECYCLE_BEYOND = 40.0
_RECYCLE_SPREAD = 30.0
_RECYCLE_CLEARANCE = 15.0
# Lane changes (MOBIL, Kesting et al. 2007).
LANE_CHANGE_SPEED = 1.2  # m/s of lateral motion during a change
_MOBIL_PERIOD = 10  # steps between one car's decisions (a rotating tenth decides each step)
_MOBIL_POLITENESS = 0.3  # weight of the new follower's loss against the car's own gain
_MOBIL_THRESHOLD = 0.2  # m/s^2 of gain a change must bring
_MOBIL_KEEP_RIGHT = 0.15  # m/s^2 bias towards the right (lower-numbered) lane
_MOBIL_SAFE_BRAKE = 4.0  # m/s^2 the new follower may be made to brake at most
_MOBIL_MIN_GAP = 2.0  # metres of bumper gap to the new leader and follower
_MOBIL_ALONGSIDE = 3.0  # metres between bumpers from any car of the target lane
_CENTRED = 0.1  # metres from its lane's centre: a car still changing lanes does not decide
# Purposes of counter_rng draws, keyed with the slot (at reset) or (step, slot) (recycling).
_DRAW_ACTIVE, _DRAW_S, _DRAW_LANE, _DRAW_DESIRED, _DRAW_LENGTH = 10, 11, 12, 13, 14
_DRAW_RECYCLE_LANE, _DRAW_RECYCLE_S = 1, 2

# Given positions and speeds of some cars and their leaders' gap and speed, the leaders with
# whatever else the cars must stop for (a red light) put in.
LeaderFilter = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray,
                                                                                np.ndarray]]


@dataclasses.dataclass
class Traffic:
    """Every world's route traffic: arrays (N worlds, K slots)."""

    s: np.ndarray  # progress along the route
    d: np.ndarray  # lateral offset; moves towards lane * lane_width during a lane change
    v: np.ndarray  # speed, m/s
    desired_v: np.ndarray  # IDM's desired speed
    length: np.ndarray
    width: np.ndarray
    lane: np.ndarray  # int: the lane the car is in, or changing to
    active: np.ndarray  # bool: the slot holds a car

    @classmethod
    def empty(cls, num_envs: int, slots: int) -> Traffic:
        shape = (num_envs, slots)
        return cls(s=np.zeros(shape),
                   d=np.zeros(shape),
                   v=np.zeros(shape),
                   desired_v=np.zeros(shape),
                   length=np.full(shape, CAR_LENGTH),
                   width=np.full(shape, CAR_WIDTH),
                   lane=np.zeros(shape, dtype=np.int64),
                   active=np.zeros(shape, dtype=bool))

    def take(self, envs: np.ndarray) -> Traffic:
        return take_worlds(self, envs)


def place(traffic: Traffic, p: WorldParams, envs: np.ndarray, draw: Callable[..., np.ndarray],
          ego_s: np.ndarray, ego_lane: np.ndarray) -> None:
    """Fill worlds ``envs`` at an episode's start, ``draw(slot, purpose)`` giving uniforms.

    Slots are spread evenly over the window (jittered), each taken with the probability that
    gives the configured density, then thinned so no car starts beside the ego or too close
    to another car of its lane (the earlier slot keeps its place).
    """
    k, lanes = p.max_vehicles, p.map.lanes
    slots = np.arange(k)
    span = 0.5 * VIEW_BEHIND + VIEW_AHEAD
    expected = p.density_per_km_lane * lanes * span / 1000.0
    s = ego_s[:, None] - 0.5 * VIEW_BEHIND + (slots + 0.1 + 0.8 * draw(slots, _DRAW_S)) * span / k
    lane = np.minimum((draw(slots, _DRAW_LANE) * lanes).astype(np.int64), lanes - 1)
    active = draw(slots, _DRAW_ACTIVE) < min(1.0, expected / k)
    active &= ~((lane == ego_lane[:, None]) & (np.abs(s - ego_s[:, None]) < _START_EGO_CLEARANCE))
    close = (lane[:, :, None] == lane[:, None, :]) & (np.abs(s[:, :, None] - s[:, None, :])
                                                      < _START_SPACING)
    close &= active[:, None, :] & (slots[None, :] < slots[:, None])[None]
    active &= ~close.any(axis=2)
    traffic.s[envs], traffic.lane[envs], traffic.d[envs] = s, lane, lane * p.map.lane_width
    traffic.desired_v[envs] = (_DESIRED_MIN +
                               _DESIRED_SPREAD * draw(slots, _DRAW_DESIRED)) * p.map.speed_limit
    traffic.v[envs] = _START_SPEED * traffic.desired_v[envs]
    traffic.length[envs] = TRAFFIC_LENGTH_MIN + TRAFFIC_LENGTH_SPREAD * draw(slots, _DRAW_LENGTH)
    traffic.active[envs] = active


class _Agents(NamedTuple):
    """Every world's traffic slots and then its ego (column K): (N, K + 1), float32.

    The pairwise matrices built from these are the hot path; centimetres suffice there.
    """

    s: np.ndarray
    d: np.ndarray
    v: np.ndarray
    length: np.ndarray
    active: np.ndarray  # bool; the ego is always active


class _Pairs(NamedTuple):
    """Pairwise relations of the agents: (N, K + 1 from, K + 1 to)."""

    gap: np.ndarray  # bumper-to-bumper distance along the route, signed
    ahead: np.ndarray  # bool: "to" is active and ahead of "from" (never itself)


def step(traffic: Traffic,
         p: WorldParams,
         ego_s: np.ndarray,
         ego_d: np.ndarray,
         ego_v: np.ndarray,
         period: np.ndarray | None,
         steps: np.ndarray,
         seed: np.ndarray,
         leader_filter: LeaderFilter | None = None) -> None:
    """Advance every world's traffic by ``control_dt``.

    ``period`` (N,) is the route's length on a closed route (``s`` wraps), None on open ones;
    ``steps`` and ``seed`` key the recycling draws; ``leader_filter`` adds what else a car
    must stop for.
    """
    k, w, dt = p.max_vehicles, p.map.lane_width, p.control_dt
    if k == 0:
        return
    f32 = np.float32
    agents = _Agents(
        s=np.concatenate([traffic.s, ego_s[:, None]], axis=1).astype(f32),
        d=np.concatenate([traffic.d, ego_d[:, None]], axis=1).astype(f32),
        v=np.concatenate([traffic.v, ego_v[:, None]], axis=1).astype(f32),
        length=np.concatenate(
            [traffic.length, np.full((ego_s.shape[0], 1), p.ego.length)], axis=1).astype(f32),
        active=np.concatenate(
            [traffic.active, np.ones((ego_s.shape[0], 1), dtype=bool)], axis=1))
    pairs = _pairs(agents, period)
    lead_gap, lead_v = _leader_in_lane(agents, pairs, traffic.lane, w, k)
    if leader_filter is not None:
        lead_gap, lead_v = leader_filter(traffic.s, traffic.v, lead_gap, lead_v)
    acc = idm_acceleration(traffic.v, traffic.desired_v, lead_gap, lead_v, p.idm)

    deciding = traffic.active & ((steps[:, None] + np.arange(k)) % _MOBIL_PERIOD == 0)
    deciding &= np.abs(traffic.d - traffic.lane * w) < _CENTRED
    if p.map.lanes > 1 and deciding.any():
        _change_lanes(traffic, p, deciding, agents, pairs, acc)

    traffic.v = np.clip(traffic.v + acc * dt, 0.0, None)
    traffic.s = traffic.s + traffic.v * dt
    target = traffic.lane * w
    traffic.d = traffic.d + np.clip(target - traffic.d, -LANE_CHANGE_SPEED * dt,
                                    LANE_CHANGE_SPEED * dt)
    _recycle(traffic, p, ego_s, period, steps, seed)


def wrap_gap(gap: np.ndarray, period: np.ndarray | None) -> np.ndarray:
    """Signed distances along the route, wrapped into +-half a lap on a closed route."""
    if period is None:
        return gap
    return (gap + period / 2) % period - period / 2


def _pairs(agents: _Agents, period: np.ndarray | None) -> _Pairs:
    centre = agents.s[:, None, :] - agents.s[:, :, None]  # from row to column, centre to centre
    centre = wrap_gap(centre, None if period is None else period[:, None, None])
    ahead = (centre > 0) & agents.active[:, None, :]
    np.einsum("nii->ni", ahead)[...] = False
    gap = centre - 0.5 * (agents.length[:, :, None] + agents.length[:, None, :])
    return _Pairs(gap, ahead)


def _leader_in_lane(agents: _Agents, pairs: _Pairs, lane: np.ndarray, lane_width: float,
                    k: int) -> tuple[np.ndarray, np.ndarray]:
    """Bumper gap to, and speed of, each traffic car's nearest agent ahead in ``lane`` (N, K)."""
    f32 = np.float32
    lane_d = (lane * lane_width).astype(f32)
    in_lane = np.abs(agents.d[:, None, :] - lane_d[..., None]) < f32(_IN_LANE * lane_width)
    gap = np.where(pairs.ahead[:, :k] & in_lane, pairs.gap[:, :k], f32(np.inf))
    leader = np.argmin(gap, axis=-1)
    lead_gap = np.take_along_axis(gap, leader[..., None], -1)[..., 0]
    lead_v = np.take_along_axis(agents.v, leader, -1)
    return lead_gap.astype(np.float64), lead_v.astype(np.float64)


def _change_lanes(traffic: Traffic, p: WorldParams, deciding: np.ndarray, agents: _Agents,
                  pairs: _Pairs, acc: np.ndarray) -> None:
    """MOBIL for the cars ``deciding``: move to the adjacent lane that helps most, if safe.

    A change helps when the car's acceleration behind its new leader, plus a polite share of
    what its new follower gains or loses, beats today's acceleration by a threshold (with a
    bias to keep right). It is safe when the new follower need not brake hard, both new gaps
    are open, and no car of the target lane is alongside. ``acc`` is this step's IDM
    acceleration of every traffic car.
    """
    k, w = p.max_vehicles, p.map.lane_width
    world, car = np.nonzero(deciding)  # one row per deciding car
    rows = np.arange(len(car))
    gap_to = pairs.gap[world, car]  # (M, K + 1): from the deciding car to every agent
    gap_from = pairs.gap[world, :, car]  # from every agent to the deciding car
    is_ahead = pairs.ahead[world, car]
    others_d, others_v = agents.d[world], agents.v[world]
    my_lane, my_v = traffic.lane[world, car], traffic.v[world, car]
    my_desired_v, my_length = traffic.desired_v[world, car], traffic.length[world, car]
    # Every agent's length (the ego's, EgoParams', last) and centre distance from the deciding
    # car.
    agent = np.arange(k + 1)
    others_length = np.where(agent < k, traffic.length[world][:, np.minimum(agent, k - 1)],
                             p.ego.length)
    centre_to = gap_to + 0.5 * (my_length[:, None] + others_length)
    best_gain = np.full(world.shape, -np.inf)
    best_lane = my_lane.copy()
    for side in (-1, 1):  # right, then left
        lane = my_lane + side
        valid = (lane >= 0) & (lane < p.map.lanes)
        in_lane = np.abs(others_d - lane[:, None] * w) < _IN_LANE * w
        # The new leader: nearest agent ahead in the target lane.
        ahead_gap = np.where(is_ahead & in_lane, gap_to, np.inf)
        ahead_gap[rows, car] = np.inf
        leader = np.argmin(ahead_gap, axis=1)
        lead_gap = ahead_gap[rows, leader]
        # The new follower: nearest agent behind in the target lane (maybe the ego).
        behind_gap = np.where(in_lane & (gap_from > 0), gap_from, np.inf)
        behind_gap[rows, car] = np.inf
        follower = np.argmin(behind_gap, axis=1)
        follow_gap = behind_gap[rows, follower]
        has_follower = np.isfinite(follow_gap)
        my_new_acc = idm_acceleration(my_v, my_desired_v, lead_gap, others_v[rows, leader], p.idm)
        follower_v = others_v[rows, follower]
        # The ego has no desired speed here: its current speed stands in.
        follower_desired_v = np.where(follower < k, traffic.desired_v[world,
                                                                      np.minimum(follower, k - 1)],
                                      follower_v)
        follower_new_acc = idm_acceleration(follower_v, follower_desired_v, follow_gap, my_v, p.idm)
        # Its acceleration today is taken as on a free road (cheap, and errs on changing).
        follower_old_acc = idm_acceleration(follower_v, follower_desired_v, np.inf, follower_v,
                                            p.idm)
        # Alongside: less than _MOBIL_ALONGSIDE between bumpers, with each car's own length.
        alongside = in_lane & (np.abs(centre_to) < 0.5 *
                               (my_length[:, None] + others_length) + _MOBIL_ALONGSIDE)
        alongside[rows, car] = False
        safe = ~has_follower | (follower_new_acc > -_MOBIL_SAFE_BRAKE)
        safe &= (lead_gap > _MOBIL_MIN_GAP) & (follow_gap > _MOBIL_MIN_GAP)
        safe &= ~alongside.any(axis=1)
        # Politeness counts only traffic followers: the ego's loss is the policy's problem.
        follower_loss = np.where(has_follower & (follower < k), follower_new_acc - follower_old_acc,
                                 0.0)
        gain = my_new_acc - acc[world, car] + _MOBIL_POLITENESS * follower_loss
        gain += _MOBIL_KEEP_RIGHT * (-side)
        better = valid & safe & (gain > _MOBIL_THRESHOLD) & (gain > best_gain)
        best_gain = np.where(better, gain, best_gain)
        best_lane = np.where(better, lane, best_lane)
    traffic.lane[world, car] = best_lane


def _recycle(traffic: Traffic, p: WorldParams, ego_s: np.ndarray, period: np.ndarray | None,
             steps: np.ndarray, seed: np.ndarray) -> None:
    """Cars that fell far behind or ahead reappear ahead, so traffic density holds."""
    rel = wrap_gap(traffic.s - ego_s[:, None], None if period is None else period[:, None])
    gone = traffic.active & ((rel < -VIEW_BEHIND) | (rel > VIEW_AHEAD + _RECYCLE_BEYOND))
    if not gone.any():
        return
    world, car = np.nonzero(gone)
    lanes = p.map.lanes
    u = counter_rng.uniform(steps[world], car, _DRAW_RECYCLE_LANE, start=seed[world])
    lane = np.minimum((u * lanes).astype(np.int64), lanes - 1)
    new_s = ego_s[world] + VIEW_AHEAD - _RECYCLE_SPREAD * counter_rng.uniform(
        steps[world], car, _DRAW_RECYCLE_S, start=seed[world])
    rel_all = traffic.s[world] - new_s[:, None]
    same_lane = traffic.active[world] & (traffic.lane[world] == lane[:, None])
    clear = ~(same_lane & (np.abs(rel_all) < _RECYCLE_CLEARANCE)).any(axis=1)
    traffic.s[world, car] = np.where(clear, new_s, traffic.s[world, car])
    traffic.lane[world, car] = np.where(clear, lane, traffic.lane[world, car])
    traffic.d[world, car] = np.where(clear, lane * p.map.lane_width, traffic.d[world, car])
    traffic.v[world, car] = np.where(clear, _START_SPEED * traffic.desired_v[world, car],
                                     traffic.v[world, car])
    traffic.active[world, car] = clear
