"""The simulator's parameters, shared by the world and its rooms."""

from __future__ import annotations

import dataclasses

from carla_env.sim.roads import MapSpec
from carla_env.sim.vehicles import EgoParams, IDMParams

__all__ = ["WorldParams"]


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
