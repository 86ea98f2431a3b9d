"""Counter-based random numbers: a draw is a hash of what it is for, not a generator's state.

A world's traffic, a respawned car and a baseline's random action each draw from
``uniform(seed, episode_step, car, purpose)``. Nothing is carried between steps, so an episode
replays exactly whichever batch it runs in and whatever else that batch does (the video of
one evaluation episode replays it alone), and a reset world's draws need no saved state.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["uniform"]

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def uniform(*keys: ArrayLike, start: ArrayLike = 0) -> np.ndarray:
    """Uniform [0, 1) floats from a splitmix64 chain over the integer ``keys`` (broadcast).

    The state starts at ``start``; each key is xor-ed in, then mixed with splitmix64's
    finalizer. A vectorized hash is used rather than ``numpy.random.Philox`` because Philox
    would need one generator object per (world, step, car): thousands per batched step.
    """
    with np.errstate(over="ignore"):
        z = np.asarray(start, dtype=np.uint64)
        for key in keys:
            z = (z ^ np.asarray(key, dtype=np.uint64)) * np.uint64(0x9E3779B97F4A7C15) & _MASK64
            z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9) & _MASK64
            z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB) & _MASK64
            z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * (1.0 / 2**53)
