"""The embedded simulator replays bit for bit: digests pinned on the code before a refactor.

A refactor of ``carla_env.sim`` (renamed fields, split modules, constants defined once) must
not change a single bit of any episode. These tests drive fixed batches with a fixed mix of
random and autopilot actions and compare a sha256 of everything that comes out with a digest
recorded on the code before the change. A digest that moves means behaviour moved: either
the change was not a pure refactor, or (stated in its commit) it was meant to and the
literal is updated with it.

Two digests: one through the Gymnasium vector env (observations including final ones,
rewards, terminated/truncated, the ego's pose), and one over the ``World`` alone (its state,
events, the other cars, the signal ahead and a camera frame), which does not depend on the
env wrapper, its reward or its observation layout.

The digests are of float64 arithmetic: they hold for one NumPy build on one kind of CPU
(NumPy picks SIMD kernels for sin/cos/arctan by CPU). If one fails on a machine where the code
did not change, compare with ``git stash`` on that machine before suspecting the code.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from carla_env import SimulatorConfig
from carla_env.autopilot import Autopilot
from carla_env.embedded import EmbeddedVectorEnv, world_params
from carla_env.sim.render import render_bev
from carla_env.sim.world import World

NUM_ENVS, STEPS = 64, 300
# name -> (scenario, map): both route maps with traffic, the closed ring (wrapped progress
# and gaps), and rain (lower friction for the ego and the expert).
CASES = {
    "highway": ("highway", ""),
    "urban": ("urban", ""),
    "ring": ("highway", "ring"),
    "rain": ("rain", ""),
}


def _random_actions(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.uniform([0.0, -1.0, 0.0], [1.0, 1.0, 1.0], (n, 3)).astype(np.float32)


def _update(h: hashlib._Hash, *arrays: np.ndarray) -> None:
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(a.tobytes())


def env_digest(case: str) -> str:
    """sha256 of a vector env's outputs over ``STEPS`` steps, odd steps driven by the expert."""
    cfg = SimulatorConfig(scenario=CASES[case][0],
                          map=CASES[case][1],
                          observation_keys=["state", "neighbors"])
    envs = EmbeddedVectorEnv(NUM_ENVS, cfg)
    obs, _ = envs.reset(seed=123)
    rng = np.random.default_rng(0)
    h = hashlib.sha256()
    for t in range(STEPS):
        actions = envs.autopilot() if t % 2 else _random_actions(rng, NUM_ENVS)
        obs, reward, terminated, truncated, info = envs.step(actions)
        _update(h, *(obs[k] for k in sorted(obs)), reward, terminated, truncated)
        if "final_obs" in info:
            _update(h, *(info["final_obs"][k] for k in sorted(info["final_obs"])))
        w = envs.world
        _update(h, w.x, w.y, w.yaw, w.v)
    return h.hexdigest()


def world_digest(case: str) -> str:
    """sha256 of a ``World``'s state and queries, reset every 100 steps in a rolling third."""
    cfg = SimulatorConfig(scenario=CASES[case][0], map=CASES[case][1])
    world = World(world_params(cfg), NUM_ENVS)
    world.reset(np.arange(NUM_ENVS), np.arange(NUM_ENVS) * 7919 + 11)
    autopilot = Autopilot(world)
    rng = np.random.default_rng(1)
    h = hashlib.sha256()
    for t in range(STEPS):
        actions = autopilot.act() if t % 3 else _random_actions(rng, NUM_ENVS)
        # Every fourth world floors it with the expert's steering: rear-end collisions, red
        # lights run and routes completed, so the event checks are exercised too.
        actions[::4, 0], actions[::4, 2] = 1.0, 0.0
        world.step(actions.astype(np.float64))
        _update(h, world.x, world.y, world.yaw, world.v, world.s, world.d, world.heading_error,
                world.lane, world.jerk, world.collision, world.off_road, world.lane_invasion,
                world.red_light, world.completed, world.route_length())
        _update(h, *world.traffic_world(), *world.next_signal())
        if world.p.cross_vehicles:
            _update(h, world.cross_may_go())
        if t % 50 == 0:
            _update(h, render_bev(world, 32, 32))
        if t % 100 == 99:
            envs = np.arange(t % 3, NUM_ENVS, 3)
            world.reset(envs, envs * 31 + t)
    return h.hexdigest()


# Recorded at e919310 (before the world was split into rooms), then moved once on purpose:
# MOBIL's "nobody alongside" test took every other car to be 4.6 m long (the ego's length as
# a literal); it now uses each car's own length. Moved: both urban digests, ring's env and
# rain's world digest (the other runs never met a car that the two rules judge apart).
ENV_DIGESTS = {
    "highway": "1bd3921741f112d5cc36ee03a00244f8dd0b45769f7251a00e5dac742cb10e26",
    "urban": "7ab766c9de87e8165fff69183add731a4b17b1c13de3fa59dcf093ef8a73d991",
    "ring": "fad5bba55b2a2f40d4f6f3a324d09d45f710df5e66717d52523274dccf023f5c",
    "rain": "9790220a49684664a53d8f9f7ea7f089ea36e40443ecbf5c4d1da9e039b03cc1",
}
WORLD_DIGESTS = {
    "highway": "e69d3bda796075c11970a0b9a4c6d01c213f91896d61887f5142eebdce74d9e9",
    "urban": "d45ade1f9dfdf318d5ae2d48ba1a9c014e79172a0504e03ff24ba4cdb6e27950",
    "ring": "9df6dcc964457b320706ef6d45a5a3b549b7efa95e31ceac2a6af11ef48ca685",
    "rain": "49509c71707a1f36dee3237c9c0d23c960928eda300c4e0ce3ea72fc69666027",
}


@pytest.mark.parametrize("case", CASES)
def test_env_replays_bit_identically(case: str) -> None:
    assert env_digest(case) == ENV_DIGESTS[case]


@pytest.mark.parametrize("case", CASES)
def test_world_replays_bit_identically(case: str) -> None:
    assert world_digest(case) == WORLD_DIGESTS[case]


if __name__ == "__main__":
    # Print the digests of the code as it is (to record them after an intended change).
    for name in CASES:
        print(f"{name}: env {env_digest(name)} world {world_digest(name)}")
