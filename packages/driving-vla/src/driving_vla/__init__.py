"""The DrivingVLA policy model (import name ``driving_vla``)."""

from driving_vla.configuration_driving_vla import DrivingVLAConfig
from driving_vla.modeling_driving_vla import DrivingVLA, DrivingVLAOutput

__all__ = ["DrivingVLA", "DrivingVLAConfig", "DrivingVLAOutput"]
__version__ = "0.1.0"
