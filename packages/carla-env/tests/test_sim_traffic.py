"""Route traffic's lane changes (MOBIL) judge "alongside" by each car's own length."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from carla_env import SimulatorConfig
from carla_env.embedded import world_params
from carla_env.sim.world import World


def _blocked_car(bumper_gap_behind: float) -> World:
    """One world: car 0 (lane 0) stuck behind a slow car, car 2 in lane 1 just behind it.

    Car 2 stands still, so it need not brake for car 0 and only the alongside rule (3 m
    between bumpers) can keep car 0 from moving over. Every traffic car is 4.0 m long.
    """
    params = dataclasses.replace(world_params(SimulatorConfig(scenario="highway")), max_vehicles=3)
    world = World(params, 1)
    world.reset(np.array([0]), np.array([7]))
    t, w = world.traffic, world.lane_width
    t.length[:] = 4.0
    t.active[:] = True
    t.lane[0] = [0, 0, 1]
    t.d[0] = t.lane[0] * w
    t.s[0] = [60.0, 70.0, 60.0 - 4.0 - bumper_gap_behind]
    t.v[0] = [25.0, 5.0, 0.0]
    t.desired_v[0] = [30.0, 10.0, 20.0]
    return world


@pytest.mark.parametrize(("gap", "changes"), [(2.5, False), (3.15, True)])
def test_a_car_changes_lane_only_when_no_car_is_alongside(gap: float, changes: bool) -> None:
    world = _blocked_car(gap)
    assert world.steps[0] % 10 == 0  # slot 0 decides on this step
    world.step(np.zeros((1, 3)))
    # 3.15 m between bumpers is clear by each car's own length (4.0 m); taking the neighbour
    # to be 4.6 m long, as the rule once did, would have blocked this change too.
    assert world.traffic.lane[0, 0] == (1 if changes else 0)
    assert world.traffic.lane[0, 2] == 1
