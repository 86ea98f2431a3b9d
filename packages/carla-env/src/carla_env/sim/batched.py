"""A room's state: a dataclass whose fields are arrays with the batch of worlds on axis 0.

Each room of the world (route traffic, cross traffic, signals) keeps its state this way, so
observing a few worlds (``World.subset``) slices every room the same way without knowing
its fields.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

__all__ = ["take_worlds"]

State = TypeVar("State", bound="DataclassInstance")


def take_worlds(state: State, envs: np.ndarray) -> State:
    """A copy of ``state`` holding only worlds ``envs`` (every field indexed on axis 0)."""
    fields: dict[str, Any] = {
        field.name: getattr(state, field.name)[envs] for field in dataclasses.fields(state)
    }
    return dataclasses.replace(state, **fields)
