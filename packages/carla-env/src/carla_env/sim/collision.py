"""Oriented-box overlap by the separating axis theorem, batched over arrays."""

from __future__ import annotations

from typing import Any

import numpy as np

Num = Any  # numpy arrays or Python floats, broadcast together

__all__ = ["boxes_overlap", "ego_hits"]


def boxes_overlap(ax: Num, ay: Num, ayaw: Num, alen: Num, awid: Num, bx: Num, by: Num, byaw: Num,
                  blen: Num, bwid: Num) -> Num:
    """True where box A (centre, heading, length, width) overlaps box B; shapes broadcast.

    Two rectangles are disjoint iff one of their four edge normals separates them.
    """
    dx, dy = bx - ax, by - ay
    ca, sa, cb, sb = np.cos(ayaw), np.sin(ayaw), np.cos(byaw), np.sin(byaw)
    ahl, ahw, bhl, bhw = alen / 2, awid / 2, blen / 2, bwid / 2
    # |cos| of the angles between the boxes' axes
    c_ll = np.abs(ca * cb + sa * sb)
    c_lw = np.abs(-ca * sb + sa * cb)
    overlap = np.ones(np.broadcast(dx, ayaw, byaw).shape, dtype=bool)
    # A's axes
    overlap &= np.abs(dx * ca + dy * sa) <= ahl + bhl * c_ll + bhw * c_lw
    overlap &= np.abs(-dx * sa + dy * ca) <= ahw + bhl * c_lw + bhw * c_ll
    # B's axes
    overlap &= np.abs(dx * cb + dy * sb) <= bhl + ahl * c_ll + ahw * c_lw
    overlap &= np.abs(-dx * sb + dy * cb) <= bhw + ahl * c_lw + ahw * c_ll
    return overlap


def ego_hits(ego_x: np.ndarray, ego_y: np.ndarray, ego_yaw: np.ndarray, ego_length: float,
             ego_width: float, x: np.ndarray, y: np.ndarray, heading: np.ndarray,
             length: np.ndarray, width: np.ndarray, active: np.ndarray) -> np.ndarray:
    """(N,): whether each world's ego overlaps any of its active cars (N, M).

    The exact box test runs only for cars within the sum of both half-diagonals: few cars
    are that close, so the batch stays cheap however many cars there are.
    """
    reach = 0.5 * (np.hypot(ego_length, ego_width) + np.hypot(length, width))
    near = active & ((x - ego_x[:, None])**2 + (y - ego_y[:, None])**2 < reach * reach)
    hit = np.zeros(ego_x.shape[0], dtype=bool)
    world, car = np.nonzero(near)
    if world.size:
        overlap = boxes_overlap(ego_x[world], ego_y[world], ego_yaw[world], ego_length, ego_width,
                                x[world, car], y[world, car], heading[world, car],
                                length[world, car], width[world, car])
        hit[world[overlap]] = True
    return hit
