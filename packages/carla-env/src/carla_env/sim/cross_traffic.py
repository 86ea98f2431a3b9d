"""Cross traffic at the urban map's signalised junctions.

Each world has ``cross_vehicles`` slots of cars on the cross streets of the junctions its
route goes straight through (a turn would put a cross street along the route). A cross car
drives one straight line through its junction: ``q`` is its distance past the route street's
centre line along its direction of travel (negative while it approaches). It follows the
cross car ahead of it with IDM and stops for its own signal; once clear of the junction it
re-enters at the next straight junction ahead of the ego, so the ego keeps meeting cross
traffic along the whole route.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from carla_env.sim import counter_rng
from carla_env.sim.batched import take_worlds
from carla_env.sim.params import WorldParams
from carla_env.sim.roads import RouteTable
from carla_env.sim.signals import must_stop
from carla_env.sim.vehicles import CAR_LENGTH, CAR_WIDTH, idm_acceleration

__all__ = ["CrossTraffic", "advance", "place", "poses", "reenter"]

# Cross cars live within half a block of their junction: the grid's other streets are a
# block away, so a cross street never overlaps another part of the route.
_SPAWN_Q = 38.0  # a re-entering car starts this far before the route's centre line
_FIRST_SPAWN_Q = 10.0  # at an episode's start cars are spread from here to _SPAWN_Q
_EXIT_Q = 30.0  # past this a car has left its junction
_STOP_LINE = 5.5  # metres outside the route street's edge
_START_SPEED = 8.0
_DESIRED_SPEED = 10.0
# A car up to this far behind (bumpers overlapping) still counts as the one ahead, so two
# cars re-entering on top of each other sort themselves out instead of driving through.
_OVERLAP = 4.0
_EGO_CLEARANCE = 5.0  # re-enter only at junctions at least this far ahead of the ego
_SECOND_JUNCTION = 0.4  # chance of re-entering one straight junction further on
# Purposes of counter_rng draws, keyed with the slot (at reset) or (step, slot) (re-entry).
_DRAW_DIRECTION, _DRAW_Q = 21, 22
_DRAW_REENTRY_JUNCTION, _DRAW_REENTRY_DIRECTION = 3, 4


@dataclasses.dataclass
class CrossTraffic:
    """Every world's cross traffic: arrays (N worlds, C slots)."""

    junction: np.ndarray  # int: index of its junction along the world's route
    q: np.ndarray  # metres past the route street's centre line, along its travel
    v: np.ndarray
    direction: np.ndarray  # +1: along the junction's cross direction (the route's left), -1
    active: np.ndarray  # bool: the slot holds a car

    @classmethod
    def empty(cls, num_envs: int, slots: int) -> CrossTraffic:
        shape = (num_envs, slots)
        return cls(junction=np.zeros(shape, dtype=np.int64),
                   q=np.zeros(shape),
                   v=np.zeros(shape),
                   direction=np.ones(shape),
                   active=np.zeros(shape, dtype=bool))

    def take(self, envs: np.ndarray) -> CrossTraffic:
        return take_worlds(self, envs)

    def dimensions(self) -> tuple[np.ndarray, np.ndarray]:
        """Length and width of every car (N, C): all cross cars are CAR_LENGTH x CAR_WIDTH."""
        return np.full(self.q.shape, CAR_LENGTH), np.full(self.q.shape, CAR_WIDTH)


def place(cross: CrossTraffic, p: WorldParams, routes: RouteTable, envs: np.ndarray,
          route: np.ndarray, draw: Callable[..., np.ndarray]) -> None:
    """Fill worlds ``envs`` (on routes ``route``) at an episode's start.

    Slots go round the route's straight junctions in order; a world whose route has none
    has no cross traffic.
    """
    straight = routes.junction_straight[route]  # (E, I)
    count = straight.sum(axis=1)
    order = np.argsort(~straight, axis=1, kind="stable")  # straight junctions first, in order
    slots = np.arange(p.cross_vehicles)
    pick = slots[None, :] % np.maximum(count, 1)[:, None]
    cross.junction[envs] = np.take_along_axis(order, pick, axis=1)
    cross.direction[envs] = np.where(draw(slots, _DRAW_DIRECTION) < 0.5, 1.0, -1.0)
    cross.q[envs] = -(_FIRST_SPAWN_Q + (_SPAWN_Q - _FIRST_SPAWN_Q) * draw(slots, _DRAW_Q))
    cross.v[envs] = _START_SPEED
    cross.active[envs] = (count > 0)[:, None]


def poses(cross: CrossTraffic, p: WorldParams, routes: RouteTable,
          route: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World x, y and heading of every cross car (N, C); it keeps to its right-hand lane."""
    r = route[:, None]
    centre = routes.junction_xy[r, cross.junction]  # (N, C, 2), on lane 0's centre line
    direction = routes.junction_dir[r, cross.junction] * cross.direction[..., None]
    right = np.stack([direction[..., 1], -direction[..., 0]], axis=-1)
    # The cross street's centre line sits on the route street's centre line.
    lane_width = p.map.lane_width
    mid = (p.map.lanes - 1) * lane_width / 2
    xy = centre + direction * (cross.q + cross.direction * mid)[..., None]
    xy = xy + right * (lane_width / 2)
    return xy[..., 0], xy[..., 1], np.arctan2(direction[..., 1], direction[..., 0])


def advance(cross: CrossTraffic, p: WorldParams, green: np.ndarray,
            yellow: np.ndarray) -> np.ndarray:
    """Move every cross car by ``control_dt`` under its lights; (N, C): cars that left."""
    half_road = p.map.lanes * p.map.lane_width / 2
    stop_gap = -(half_road + _STOP_LINE) - cross.q
    stop = must_stop(stop_gap, cross.v, ~green & ~yellow, yellow, p.idm.comfort_brake)
    gap = np.where(stop & (stop_gap > -1.0), np.maximum(stop_gap, 0.0), np.inf)
    # Follow the cross car ahead at the same junction in the same direction.
    same = (cross.junction[:, :, None] == cross.junction[:, None, :]) & (
        cross.direction[:, :, None] == cross.direction[:, None, :]) & cross.active[:, None, :]
    ahead = cross.q[:, None, :] - cross.q[:, :, None] - CAR_LENGTH
    ahead = np.where(same & (ahead > -_OVERLAP), ahead, np.inf)
    np.einsum("nii->ni", ahead)[...] = np.inf
    car_gap = ahead.min(axis=2)
    car_v = np.take_along_axis(cross.v, np.argmin(ahead, axis=2), 1)
    lead_v = np.where(car_gap < gap, car_v, 0.0)
    gap = np.minimum(gap, car_gap)
    acc = idm_acceleration(cross.v, np.full_like(cross.v, _DESIRED_SPEED), gap, lead_v, p.idm)
    cross.v = np.clip(cross.v + acc * p.control_dt, 0.0, None)
    cross.q = cross.q + cross.v * p.control_dt
    return cross.active & (cross.q > _EXIT_Q)


def reenter(cross: CrossTraffic, routes: RouteTable, route: np.ndarray, ego_s: np.ndarray,
            left: np.ndarray, steps: np.ndarray, seed: np.ndarray) -> None:
    """Cars ``left`` (N, C) re-enter at the next straight junction ahead of the ego.

    Sometimes the one after it instead, so cross cars do not all queue at one junction. A
    car with no straight junction ahead of the ego leaves for good (its slot goes inactive).
    """
    world, slot = np.nonzero(left)
    junction_s = routes.junction_s[route[world]]
    ahead = (junction_s
             > ego_s[world, None] + _EGO_CLEARANCE) & routes.junction_straight[route[world]]
    rows = np.arange(len(world))
    first = np.argmax(ahead, axis=1)
    valid = ahead[rows, first]
    u = counter_rng.uniform(steps[world], slot, _DRAW_REENTRY_JUNCTION, start=seed[world])
    later = ahead & (np.arange(junction_s.shape[1]) > first[:, None])
    second = np.argmax(later, axis=1)
    pick = np.where((u > 1.0 - _SECOND_JUNCTION) & later[rows, second], second, first)
    cross.junction[world, slot] = pick
    cross.direction[world, slot] = np.where(
        counter_rng.uniform(steps[world], slot, _DRAW_REENTRY_DIRECTION, start=seed[world]) < 0.5,
        1.0, -1.0)
    cross.q[world, slot] = -_SPAWN_Q
    cross.v[world, slot] = _START_SPEED
    cross.active[world, slot] = valid
