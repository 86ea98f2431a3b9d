"""``SimulatorConfig``: the one description of a driving simulation, whatever its backend."""

from __future__ import annotations

import dataclasses
import math

__all__ = ["BACKENDS", "MAX_SUBSTEPS", "MAX_SUBSTEP_DT", "SimulatorConfig"]

BACKENDS = ("embedded", "carla")
# CARLA's documented physics sub-stepping bounds: at most 16 sub-steps, each below 1/60 s
# (ideally 0.01 s), and fixed_delta_seconds <= max_substep_delta_time * max_substeps.
MAX_SUBSTEPS = 16
MAX_SUBSTEP_DT = 1.0 / 60.0


@dataclasses.dataclass
class SimulatorConfig:
    """Connection, timing and camera settings, with the names CARLABridge users know."""

    backend: str = dataclasses.field(default="embedded",
                                     metadata={"help": "embedded (no server) or carla"})
    carla_host: str = "localhost"
    carla_port: int = 2000
    carla_town: str = "Town01"
    carla_timeout: float = dataclasses.field(default=10.0,
                                             metadata={"help": "seconds to wait for the server"})
    fps: int = 30
    physics_dt: float = dataclasses.field(default=1.0 / 60.0,
                                          metadata={"help": "physics step in seconds"})
    control_dt: float = dataclasses.field(default=1.0 / 30.0,
                                          metadata={"help": "seconds between agent actions"})
    image_width: int = 224
    image_height: int = 224
    seed: int = 0

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if not 0 < self.carla_port < 65536:
            raise ValueError(f"carla_port must be in 1..65535, got {self.carla_port}")
        if self.carla_timeout <= 0:
            raise ValueError(f"carla_timeout must be > 0 seconds, got {self.carla_timeout}")
        if self.image_width < 1 or self.image_height < 1:
            raise ValueError(f"image size must be positive, got "
                             f"{self.image_width}x{self.image_height}")
        if self.physics_dt <= 0 or self.control_dt <= 0:
            raise ValueError(f"physics_dt and control_dt must be > 0, got "
                             f"{self.physics_dt} and {self.control_dt}")
        if self.physics_dt > MAX_SUBSTEP_DT + 1e-9:
            raise ValueError(f"physics_dt {self.physics_dt:.4g} s exceeds CARLA's largest "
                             f"sub-step of {MAX_SUBSTEP_DT:.4g} s")
        if self.substeps > MAX_SUBSTEPS:
            raise ValueError(
                f"control_dt {self.control_dt:.4g} s needs {self.substeps} physics "
                f"steps of {self.physics_dt:.4g} s; CARLA allows at most {MAX_SUBSTEPS}")
        ratio = self.control_dt / self.physics_dt
        if not math.isclose(ratio, round(ratio), rel_tol=0, abs_tol=1e-6):
            raise ValueError(f"control_dt ({self.control_dt:.4g} s) must be a whole multiple of "
                             f"physics_dt ({self.physics_dt:.4g} s)")

    @property
    def substeps(self) -> int:
        """Physics steps per control step."""
        return max(1, round(self.control_dt / self.physics_dt))
