"""``DrivingVLA``: vision + language + action heads for driving, as a ``PreTrainedModel``.

Inputs follow ``carla_env``'s observation contract: ``camera`` (uint8 images), ``state``
(ego features) and ``neighbors`` (nearest cars, the last feature a presence flag). The
driving instruction is embedded by a frozen causal LM when ``language_model`` is set; the
embedding is computed once per instruction and cached, so RL pays for the LM once, not per
step. Heads: controls (the mean of a Gaussian policy mapped to throttle and brake in [0, 1]
and steer in [-1, 1], by clipping as PPO does or through tanh as SAC does; see
``DrivingVLAConfig.control_activation``), future waypoints, and a value estimate.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel

from carla_env.contract import action_space
from driving_vla.configuration_driving_vla import DrivingVLAConfig

__all__ = ["DrivingVLA", "DrivingVLAOutput"]


@dataclasses.dataclass
class DrivingVLAOutput:
    """What one forward pass returns (batch first)."""

    action_mean: torch.Tensor  # (B, 3) raw control means (before clip or tanh), for a Gaussian
    controls: torch.Tensor  # (B, 3) throttle [0, 1], steer [-1, 1], brake [0, 1]
    waypoints: torch.Tensor  # (B, T, 2) future positions in the ego frame, metres
    value: torch.Tensor  # (B,)
    features: torch.Tensor  # (B, hidden_size) fused features


_BOX = action_space()
_LOW = tuple(float(x) for x in _BOX.low)  # the contract's action box: throttle, steer, brake
_HIGH = tuple(float(x) for x in _BOX.high)


def clip_controls(mean: torch.Tensor) -> torch.Tensor:
    """Clip control means to the action box, as a Gaussian policy's mode is clipped."""
    low = torch.tensor(_LOW, dtype=mean.dtype, device=mean.device)
    high = torch.tensor(_HIGH, dtype=mean.dtype, device=mean.device)
    return torch.maximum(torch.minimum(mean, high), low)


def tanh_controls(mean: torch.Tensor) -> torch.Tensor:
    """Squash control means into the action box, as SAC's deterministic action is.

    SB3's SAC takes ``tanh(mean)`` in [-1, 1] and rescales it to the box
    (``low + (a + 1) / 2 * (high - low)``); the same arithmetic here makes a SAC-trained
    control head act identically inside ``DrivingVLA``.
    """
    low = torch.tensor(_LOW, dtype=mean.dtype, device=mean.device)
    high = torch.tensor(_HIGH, dtype=mean.dtype, device=mean.device)
    return low + (0.5 * (torch.tanh(mean) + 1.0) * (high - low))


def to_controls(mean: torch.Tensor, activation: str) -> torch.Tensor:
    """Controls from control means by ``DrivingVLAConfig.control_activation``."""
    if activation == "clip":
        return clip_controls(mean)
    if activation == "tanh":
        return tanh_controls(mean)
    raise ValueError(f"DrivingVLAConfig.control_activation must be clip or tanh, got "
                     f"{activation!r}")


class _SmallCNN(nn.Module):
    """The DQN "Nature" encoder: cheap on CPU, enough for 64x64 bird's-eye rasters."""

    def __init__(self, in_channels: int, channels: list[int], image_size: int, out: int) -> None:
        super().__init__()
        c1, c2, c3 = (channels + channels[-1:] * 3)[:3]
        self.conv = nn.Sequential(nn.Conv2d(in_channels, c1, 8, stride=4), nn.ReLU(),
                                  nn.Conv2d(c1, c2, 4, stride=2), nn.ReLU(),
                                  nn.Conv2d(c2, c3, 3, stride=1), nn.ReLU(), nn.Flatten())
        with torch.no_grad():
            size = self.conv(torch.zeros(1, in_channels, image_size, image_size)).shape[1]
        self.proj = nn.Sequential(nn.Linear(size, out), nn.ReLU())

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # (B, H, W, C) uint8 -> (B, C, H, W) float in [0, 1]
        x = images.permute(0, 3, 1, 2).float() / 255.0
        return self.proj(self.conv(x))


class _NeighborEncoder(nn.Module):
    """Per-car MLP, then a max over present cars: order-free and size-free."""

    def __init__(self, features: int, out: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(features, out), nn.ReLU(), nn.Linear(out, out),
                                 nn.ReLU())

    def forward(self, neighbors: torch.Tensor) -> torch.Tensor:
        present = neighbors[..., -1:] > 0.5
        encoded = self.mlp(neighbors.float())
        encoded = torch.where(present, encoded, torch.zeros_like(encoded))
        return encoded.max(dim=1).values


class DrivingVLA(PreTrainedModel):
    """The driving policy model; ``save_pretrained`` writes config.json + safetensors."""

    config_class = DrivingVLAConfig
    config: DrivingVLAConfig
    base_model_prefix = "driving_vla"
    main_input_name = "state"

    def __init__(self, config: DrivingVLAConfig) -> None:
        super().__init__(config)
        keys = config.observation_keys
        widths = []
        if "camera" in keys:
            self.vision = _SmallCNN(3 * config.num_cameras, config.cnn_channels, config.image_size,
                                    config.hidden_size)
            widths.append(config.hidden_size)
        if "state" in keys:
            self.state_encoder = nn.Sequential(nn.Linear(config.state_dim, 128), nn.Tanh(),
                                               nn.Linear(128, 128), nn.Tanh())
            widths.append(128)
        if "neighbors" in keys:
            self.neighbor_encoder = _NeighborEncoder(config.neighbor_dim, 64)
            widths.append(64)
        if config.language_model:
            hidden = config.language_hidden_size or _language_hidden_size(config)
            config.language_hidden_size = hidden
            self.instruction_proj = nn.Linear(hidden, config.instruction_dim)
        else:
            self.instruction_embedding = nn.Parameter(torch.zeros(config.instruction_dim))
        widths.append(config.instruction_dim)
        self.trunk = nn.Sequential(nn.Linear(sum(widths), config.hidden_size), nn.Tanh(),
                                   nn.Linear(config.hidden_size, config.hidden_size), nn.Tanh())
        self.control_head = nn.Linear(config.hidden_size, config.action_dim)
        self.log_std = nn.Parameter(torch.full((config.action_dim,), float(config.log_std_init)))
        self.waypoint_head = nn.Linear(config.hidden_size, config.trajectory_length * 2)
        self.value_head = nn.Linear(config.hidden_size, 1)
        self._instruction_cache: dict[str, torch.Tensor] = {}
        self._language: tuple[Any, Any] | None = None
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear | nn.Conv2d):
            nn.init.orthogonal_(module.weight, gain=1.0)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    # ------------------------------------------------------------ language
    def _load_language_model(self) -> tuple[Any, Any]:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        cfg = self.config
        kwargs = {"gguf_file": cfg.language_model_file} if cfg.language_model_file else {}
        name = str(cfg.language_model)  # only called when one is set
        tokenizer = AutoTokenizer.from_pretrained(name, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(name, **kwargs)
        model.eval().requires_grad_(False)
        return tokenizer, model

    @torch.no_grad()
    def embed_instruction(self, instruction: str | None = None) -> torch.Tensor:
        """The frozen LM's mean last hidden state for ``instruction``, cached per string."""
        text = instruction or self.config.instruction
        if text not in self._instruction_cache:
            if self._language is None:
                self._language = self._load_language_model()
            tokenizer, model = self._language
            tokens = tokenizer(text, return_tensors="pt")
            hidden = model(**tokens, output_hidden_states=True).hidden_states[-1]
            self._instruction_cache[text] = hidden[0].mean(dim=0).float()
        return self._instruction_cache[text]

    def _instruction(self, batch: int, instruction_features: torch.Tensor | None) -> torch.Tensor:
        if not self.config.language_model:
            return self.instruction_embedding.expand(batch, -1)
        if instruction_features is None:
            instruction_features = self.embed_instruction().to(self.device)
        if instruction_features.dim() == 1:
            instruction_features = instruction_features.expand(batch, -1)
        return torch.tanh(self.instruction_proj(instruction_features))

    # ------------------------------------------------------------- forward
    def encode(self,
               camera: torch.Tensor | None = None,
               state: torch.Tensor | None = None,
               neighbors: torch.Tensor | None = None,
               instruction_features: torch.Tensor | None = None) -> torch.Tensor:
        """Fused features (B, hidden_size) of a batch of observations."""
        given = {"camera": camera, "state": state, "neighbors": neighbors}
        missing = [k for k in self.config.observation_keys if given[k] is None]
        if missing:
            raise ValueError(f"DrivingVLA needs observation(s) {missing} "
                             f"(config.observation_keys = {self.config.observation_keys})")
        parts = []
        if camera is not None and "camera" in self.config.observation_keys:
            parts.append(self.vision(camera))
        if state is not None and "state" in self.config.observation_keys:
            parts.append(self.state_encoder(state.float()))
        if neighbors is not None and "neighbors" in self.config.observation_keys:
            parts.append(self.neighbor_encoder(neighbors))
        parts.append(self._instruction(parts[0].shape[0], instruction_features))
        return self.trunk(torch.cat(parts, dim=1))

    def forward(self,
                camera: torch.Tensor | None = None,
                state: torch.Tensor | None = None,
                neighbors: torch.Tensor | None = None,
                instruction_features: torch.Tensor | None = None) -> DrivingVLAOutput:
        """Run the model on a batch of observations (the keys the config names)."""
        features = self.encode(camera, state, neighbors, instruction_features)
        mean = self.control_head(features)
        return DrivingVLAOutput(
            action_mean=mean,
            controls=to_controls(mean, self.config.control_activation),
            waypoints=self.waypoint_head(features).view(-1, self.config.trajectory_length, 2),
            value=self.value_head(features).squeeze(-1),
            features=features,
        )

    @torch.no_grad()
    def act(self, observation: dict[str, Any]) -> torch.Tensor:
        """Deterministic controls for a batch of (numpy or torch) observations."""
        inputs = {
            k: torch.as_tensor(observation[k]).to(self.device) for k in self.config.observation_keys
        }
        return self(**inputs).controls


def _language_hidden_size(config: DrivingVLAConfig) -> int:
    """Read the LM's hidden size from its config (no weights loaded)."""
    from transformers import AutoConfig

    kwargs = {"gguf_file": config.language_model_file} if config.language_model_file else {}
    return int(AutoConfig.from_pretrained(str(config.language_model), **kwargs).hidden_size)
