"""Traffic signals at the urban map's junctions: one fixed cycle, offset per junction.

The cycle (``SIGNAL_CYCLE`` seconds) is seen from the route: the route has green, then yellow,
then all-red; the cross street has green, then yellow, then all-red again before the route's
green. Each junction of each world runs the cycle from its own offset, drawn when the episode
starts, so the lights along a route are not in step and an episode cannot learn one timing.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from carla_env.sim.batched import take_worlds

__all__ = [
    "GREEN", "RED", "SIGNAL_CYCLE", "STOP_OFFSET", "YELLOW", "Signals", "cross_lights", "must_stop",
    "next_stop_line", "stop_line_as_leader"
]

SIGNAL_CYCLE = 24.0
# Phase boundaries within the cycle, in seconds.
ROUTE_GREEN_END = 10.0
ROUTE_YELLOW_END = 13.0  # then all-red until the cross street's green
CROSS_GREEN_START = 14.0
CROSS_GREEN_END = 21.0
CROSS_YELLOW_END = 23.0  # then all-red until the cycle restarts
STOP_OFFSET = 11.0  # stop line: metres before a junction's centre along the route
# A stop line counts as "next" until a car is this far past it (it may be stopping on it).
_PASSED_LINE = 2.0
# Route signal states, as observations and the autopilot read them.
GREEN, YELLOW, RED = 0, 1, 2


@dataclasses.dataclass
class Signals:
    """Every junction's cycle offset: (N worlds, I junctions along the route), seconds."""

    offset: np.ndarray

    @classmethod
    def zeros(cls, num_envs: int, num_junctions: int) -> Signals:
        return cls(np.zeros((num_envs, num_junctions)))

    def take(self, envs: np.ndarray) -> Signals:
        return take_worlds(self, envs)


def next_stop_line(junction_s: np.ndarray, offset: np.ndarray, time: np.ndarray,
                   s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance from route positions ``s`` (N, M) to the next stop line, and its route state.

    ``junction_s`` (N, I) are the junctions' positions on each world's route (+inf padding),
    ``offset`` (N, I) their cycle offsets, ``time`` (N,) the episode clocks. State is GREEN
    (also where no junction is ahead: the distance is then +inf), YELLOW or RED.
    """
    stop = junction_s - STOP_OFFSET
    dist = stop[:, None, :] - s[..., None]
    dist = np.where(dist > -_PASSED_LINE, dist, np.inf)
    junction = np.argmin(dist, axis=-1)
    gap = np.take_along_axis(dist, junction[..., None], -1)[..., 0]
    phase = np.mod(time[:, None] + np.take_along_axis(offset, junction, -1), SIGNAL_CYCLE)
    state = np.where(phase < ROUTE_GREEN_END, GREEN, np.where(phase < ROUTE_YELLOW_END, YELLOW,
                                                              RED))
    return gap, np.where(np.isfinite(gap), state, GREEN)


def cross_lights(offset: np.ndarray, junction: np.ndarray,
                 time: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Green and yellow of the cross-street signal at ``junction`` (N, C) indices."""
    phase = np.mod(time[:, None] + np.take_along_axis(offset, junction, 1), SIGNAL_CYCLE)
    green = (phase >= CROSS_GREEN_START) & (phase < CROSS_GREEN_END)
    yellow = (phase >= CROSS_GREEN_END) & (phase < CROSS_YELLOW_END)
    return green, yellow


def must_stop(stop_gap: np.ndarray, v: np.ndarray, red: np.ndarray, yellow: np.ndarray,
              comfort_brake: float) -> np.ndarray:
    """Stop for red, and for yellow where the line is far enough to stop comfortably.

    "Far enough" is half the comfortable braking distance: a car that would need harder than
    twice its comfortable braking goes through on yellow, as drivers do.
    """
    stoppable = stop_gap > v * v / (2 * comfort_brake) * 0.5
    return red | (yellow & stoppable)


def stop_line_as_leader(stop_gap: np.ndarray, state: np.ndarray, v: np.ndarray,
                        lead_gap: np.ndarray, lead_v: np.ndarray,
                        comfort_brake: float) -> tuple[np.ndarray, np.ndarray]:
    """IDM's leader, with a stop line the car must stop at standing in as a leader at rest.

    The nearer of the car ahead (``lead_gap``, ``lead_v``) and a red (or stoppable yellow)
    stop line ``stop_gap`` ahead; a line up to 1 m behind still holds a car that overshot it.
    """
    stop = must_stop(stop_gap, v, state == RED, state == YELLOW, comfort_brake)
    gap_sig = np.where(stop & (stop_gap > -1.0), np.maximum(stop_gap, 0.0), np.inf)
    closer = gap_sig < lead_gap
    return np.where(closer, gap_sig, lead_gap), np.where(closer, 0.0, lead_v)
