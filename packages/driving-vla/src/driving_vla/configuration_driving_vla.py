"""``DrivingVLAConfig``: the architecture of a DrivingVLA model, saved as ``config.json``.

It is a ``transformers.PretrainedConfig`` so that checkpoints follow the Hugging Face contract
(``save_pretrained`` / ``from_pretrained`` / the Hub) that everything downstream expects.
"""

from __future__ import annotations

from typing import Any

from transformers import PretrainedConfig

__all__ = ["DrivingVLAConfig"]

_POSITIVE = ("num_cameras", "image_size", "action_dim", "trajectory_length", "hidden_size")


class DrivingVLAConfig(PretrainedConfig):
    """Sizes of the vision, language and action parts of a DrivingVLA model."""

    model_type = "driving_vla"

    def __init__(self,
                 num_cameras: int = 1,
                 image_size: int = 224,
                 action_dim: int = 3,
                 trajectory_length: int = 10,
                 hidden_size: int = 256,
                 language_model: str | None = None,
                 **kwargs: Any) -> None:
        self.num_cameras = num_cameras
        self.image_size = image_size
        self.action_dim = action_dim
        self.trajectory_length = trajectory_length
        self.hidden_size = hidden_size
        self.language_model = language_model
        for name in _POSITIVE:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(
                    f"DrivingVLAConfig.{name} must be a positive integer, got {value!r}")
        if action_dim != 3:
            raise ValueError(f"DrivingVLAConfig.action_dim must be 3 (throttle, steer, brake), "
                             f"got {action_dim}")
        super().__init__(**kwargs)
