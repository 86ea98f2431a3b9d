"""The DrivingVLA policy model (import name ``driving_vla``)."""

from driving_vla.configuration_driving_vla import DrivingVLAConfig

__all__ = ["DrivingVLAConfig"]
__version__ = "0.1.0"
