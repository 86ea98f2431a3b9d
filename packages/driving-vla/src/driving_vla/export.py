"""Export a DrivingVLA to TorchScript and ONNX for deployment without Python model code.

Both exports take the observation tensors named in ``config.observation_keys`` (in that
order) and return ``controls``, ``waypoints`` and ``value``. The instruction embedding is
computed once and baked in as a constant, so the exported graph holds no language model.
``controls`` go through the model's ``control_activation`` (clip for PPO, tanh for SAC), which
is fixed at export time: the graph holds that one mapping, not a switch.
"""

from __future__ import annotations

import io
from pathlib import Path

import torch
from torch import nn

from driving_vla.modeling_driving_vla import DrivingVLA
from trainyard_core.io import atomic_path, atomic_write_bytes

__all__ = ["example_inputs", "export_onnx", "export_torchscript"]

OUTPUT_NAMES = ["controls", "waypoints", "value"]


class _Exportable(nn.Module):

    def __init__(self, model: DrivingVLA) -> None:
        super().__init__()
        self.model = model
        self.keys = list(model.config.observation_keys)
        features = model.embed_instruction() if model.config.language_model else None
        self.instruction: torch.Tensor
        self.register_buffer("instruction", features if features is not None else torch.zeros(0))

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        kwargs = dict(zip(self.keys, inputs, strict=True))
        instruction = self.instruction if self.instruction.numel() else None
        out = self.model(**kwargs, instruction_features=instruction)
        return out.controls, out.waypoints, out.value


def example_inputs(model: DrivingVLA, batch: int = 2) -> tuple[torch.Tensor, ...]:
    """Zero observations of the right shapes and dtypes, in ``observation_keys`` order."""
    cfg = model.config
    shapes = {
        "camera": ((batch, cfg.image_size, cfg.image_size, 3 * cfg.num_cameras), torch.uint8),
        "state": ((batch, cfg.state_dim), torch.float32),
        "neighbors": ((batch, cfg.num_neighbors, cfg.neighbor_dim), torch.float32),
    }
    return tuple(torch.zeros(*shapes[k][0], dtype=shapes[k][1]) for k in cfg.observation_keys)


def export_torchscript(model: DrivingVLA, path: str | Path) -> Path:
    """Trace the model to a TorchScript file."""
    module = _Exportable(model.eval()).eval()
    traced = torch.jit.trace(module, example_inputs(model), check_trace=False)
    buffer = io.BytesIO()
    torch.jit.save(traced, buffer)
    return atomic_write_bytes(Path(path), buffer.getvalue())


def export_onnx(model: DrivingVLA, path: str | Path) -> Path:
    """Export the model to ONNX with a dynamic batch dimension."""
    module = _Exportable(model.eval()).eval()
    keys = list(model.config.observation_keys)
    batch = torch.export.Dim("batch", min=1, max=4096)
    program = torch.onnx.export(
        module,
        example_inputs(model),
        input_names=keys,
        output_names=OUTPUT_NAMES,
        # forward(*inputs): one varargs argument holding every input
        dynamic_shapes=(tuple({0: batch} for _ in keys),),
        dynamo=True,
        verbose=False)
    assert program is not None
    with atomic_path(path) as tmp:
        program.save(str(tmp))
    return Path(path)
