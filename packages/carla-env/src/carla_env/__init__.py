"""Driving environments for trainyard (import name ``carla_env``)."""

from carla_env.config import SimulatorConfig

__all__ = ["SimulatorConfig"]
__version__ = "0.1.0"
