"""``DrivingVLAConfig``: the architecture of a DrivingVLA model, saved as ``config.json``.

It is a ``transformers.PretrainedConfig`` so that checkpoints follow the Hugging Face contract
(``save_pretrained`` / ``from_pretrained`` / the Hub) that everything downstream expects.
The observation sizes and the action default to ``carla_env``'s contract (its state and
neighbour features, ``SimulatorConfig``'s neighbour count and camera size, throttle, steer and
brake), read from it rather than copied, so a change there reaches the model's defaults.
A saved config.json keeps its own sizes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from transformers import PretrainedConfig

from carla_env.config import OBSERVATION_KEYS, SimulatorConfig
from carla_env.contract import ACTION_NAMES, NEIGHBOR_FEATURES, STATE_FEATURES

__all__ = ["CONTROL_ACTIVATIONS", "OBSERVATION_KEYS", "DrivingVLAConfig"]

# Field defaults, not SimulatorConfig(): building one reads CARLA_HOST/CARLA_PORT.
_SIM: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(SimulatorConfig)}
CONTROL_ACTIVATIONS = ("clip", "tanh")
_POSITIVE = ("num_cameras", "image_size", "action_dim", "trajectory_length", "hidden_size",
             "state_dim", "neighbor_dim", "instruction_dim")


class DrivingVLAConfig(PretrainedConfig):
    """Sizes of the vision, language and action parts of a DrivingVLA model.

    Args:
        observation_keys: which of camera, state, neighbors the model reads.
        num_cameras: camera images stacked on the channel axis.
        image_size: square camera resolution.
        action_dim: the contract's action size, 3 (throttle, steer, brake).
        trajectory_length: future waypoints the waypoint head predicts.
        hidden_size: width of the fused features.
        state_dim, num_neighbors, neighbor_dim: sizes of the state and neighbours inputs.
        cnn_channels: channels of the default small CNN vision encoder.
        language_model: a transformers causal LM (path or Hub id) that embeds the instruction;
            None uses a learned instruction vector.
        language_model_file: a GGUF file inside ``language_model`` (e.g. SmolLM2's).
        instruction: the default driving instruction.
        instruction_dim: size the instruction embedding is projected to.
        language_hidden_size: the language model's hidden size (read from it when None).
        log_std_init: initial log standard deviation of the control distribution.
        control_activation: how the control head's output becomes controls. ``clip``: the
            Gaussian mean clipped to the action box (PPO's deterministic action). ``tanh``:
            ``low + (tanh(mean) + 1) / 2 * (high - low)``, SAC's squashed deterministic action
            rescaled to the box, so a SAC-trained head means the same thing after export.
    """

    model_type = "driving_vla"

    def __init__(self,
                 observation_keys: Sequence[str] = ("state", "neighbors"),
                 num_cameras: int = 1,
                 image_size: int = _SIM["image_height"],
                 action_dim: int = len(ACTION_NAMES),
                 trajectory_length: int = 10,
                 hidden_size: int = 256,
                 state_dim: int = len(STATE_FEATURES),
                 num_neighbors: int = _SIM["neighbors"],
                 neighbor_dim: int = len(NEIGHBOR_FEATURES),
                 cnn_channels: list[int] | tuple[int, ...] = (32, 64, 64),
                 language_model: str | None = None,
                 language_model_file: str | None = None,
                 instruction: str = "follow the route",
                 instruction_dim: int = 64,
                 language_hidden_size: int | None = None,
                 log_std_init: float = -0.5,
                 control_activation: str = "clip",
                 **kwargs: Any) -> None:
        self.observation_keys = list(observation_keys)
        self.num_cameras = num_cameras
        self.image_size = image_size
        self.action_dim = action_dim
        self.trajectory_length = trajectory_length
        self.hidden_size = hidden_size
        self.state_dim = state_dim
        self.num_neighbors = num_neighbors
        self.neighbor_dim = neighbor_dim
        self.cnn_channels = list(cnn_channels)
        self.language_model = language_model
        self.language_model_file = language_model_file
        self.instruction = instruction
        self.instruction_dim = instruction_dim
        self.language_hidden_size = language_hidden_size
        self.log_std_init = log_std_init
        self.control_activation = control_activation
        for name in _POSITIVE:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(
                    f"DrivingVLAConfig.{name} must be a positive integer, got {value!r}")
        if self.num_neighbors < 0:
            raise ValueError(f"DrivingVLAConfig.num_neighbors must be >= 0, got {num_neighbors!r}")
        if action_dim != len(ACTION_NAMES):
            raise ValueError(f"DrivingVLAConfig.action_dim must be {len(ACTION_NAMES)} "
                             f"({', '.join(ACTION_NAMES)}), got {action_dim}")
        unknown = [k for k in self.observation_keys if k not in OBSERVATION_KEYS]
        if unknown or not self.observation_keys:
            raise ValueError(f"DrivingVLAConfig.observation_keys must be a non-empty subset of "
                             f"{', '.join(OBSERVATION_KEYS)}, got unknown {unknown}")
        if control_activation not in CONTROL_ACTIVATIONS:
            raise ValueError(f"DrivingVLAConfig.control_activation must be one of "
                             f"{', '.join(CONTROL_ACTIVATIONS)}, got {control_activation!r}")
        if not self.cnn_channels or any(c < 1 for c in self.cnn_channels):
            raise ValueError(f"DrivingVLAConfig.cnn_channels must be positive, got {cnn_channels}")
        super().__init__(**kwargs)
