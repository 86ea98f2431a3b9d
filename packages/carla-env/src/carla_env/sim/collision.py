"""Oriented-box overlap by the separating axis theorem, batched over arrays."""

from __future__ import annotations

from typing import Any

import numpy as np

Num = Any  # numpy arrays or Python floats, broadcast together

__all__ = ["boxes_overlap"]


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
