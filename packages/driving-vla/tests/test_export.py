"""Exported TorchScript and ONNX models reproduce PyTorch's outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from driving_vla import DrivingVLA, DrivingVLAConfig
from driving_vla.export import export_onnx, export_torchscript
from driving_vla.modeling_driving_vla import to_controls

KEYS = ["camera", "state", "neighbors"]


def _model_and_inputs(language_model: Path | None = None,
                      control_activation: str = "clip") -> tuple[DrivingVLA, tuple]:
    torch.manual_seed(0)
    config = DrivingVLAConfig(observation_keys=KEYS,
                              language_model=str(language_model) if language_model else None,
                              control_activation=control_activation)
    model = DrivingVLA(config).eval()
    inputs = (torch.randint(0, 256, (3, 64, 64, 3), dtype=torch.uint8), torch.randn(3, 16),
              torch.cat([torch.randn(3, 8, 6), torch.ones(3, 8, 1)], dim=2))
    return model, inputs


def _reference(model: DrivingVLA, inputs: tuple) -> list[np.ndarray]:
    with torch.no_grad():
        out = model(**dict(zip(KEYS, inputs, strict=True)))
    return [out.controls.numpy(), out.waypoints.numpy(), out.value.numpy()]


def _other_activation_differs(model: DrivingVLA, inputs: tuple) -> None:
    """The export must follow the model's activation, so the other one must give other controls."""
    other = "clip" if model.config.control_activation == "tanh" else "tanh"
    with torch.no_grad():
        mean = model(**dict(zip(KEYS, inputs, strict=True))).action_mean
    assert not np.allclose(to_controls(mean, other).numpy(), _reference(model, inputs)[0])


@pytest.mark.parametrize("activation", ["clip", "tanh"])
def test_torchscript_matches_pytorch(tmp_path: Path, activation: str) -> None:
    model, inputs = _model_and_inputs(control_activation=activation)
    _other_activation_differs(model, inputs)
    path = export_torchscript(model, tmp_path / "driving_vla.pt")
    loaded = torch.jit.load(str(path))
    for got, want in zip(loaded(*inputs), _reference(model, inputs), strict=True):
        np.testing.assert_allclose(got.detach().numpy(), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("activation", ["clip", "tanh"])
def test_onnx_matches_pytorch_with_any_batch(tmp_path: Path, tiny_language_model: Path,
                                             activation: str) -> None:
    model, inputs = _model_and_inputs(tiny_language_model, control_activation=activation)
    _other_activation_differs(model, inputs)
    path = export_onnx(model, tmp_path / "driving_vla.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == KEYS
    feeds = {k: v.numpy() for k, v in zip(KEYS, inputs, strict=True)}
    for got, want in zip(session.run(None, feeds), _reference(model, inputs), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    single = {k: v[:1] for k, v in feeds.items()}
    assert session.run(None, single)[0].shape == (1, 3)


def test_export_command_writes_a_loadable_file(tmp_path: Path) -> None:
    from driving_vla.cli import main

    model, inputs = _model_and_inputs()
    model.save_pretrained(tmp_path / "ckpt")
    assert main([
        "export",
        str(tmp_path / "ckpt"), "--format", "torchscript", "--output",
        str(tmp_path / "m.pt")
    ]) == 0
    got = torch.jit.load(str(tmp_path / "m.pt"))(*inputs)[0].detach().numpy()
    np.testing.assert_allclose(got, _reference(model, inputs)[0], rtol=1e-5, atol=1e-6)
    assert main(["export", str(tmp_path / "nowhere"), "--output", str(tmp_path / "x.onnx")]) == 2


def test_export_command_reports_progress_on_stderr_and_the_file_on_stdout(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from driving_vla.cli import main

    model, _ = _model_and_inputs()
    model.save_pretrained(tmp_path / "ckpt")
    args = ["export", str(tmp_path / "ckpt"), "--format", "torchscript", "--output"]
    assert main([*args, str(tmp_path / "a.pt")]) == 0
    out, err = capsys.readouterr()
    assert out == f"torchscript: {tmp_path / 'a.pt'}\n"
    assert f"loading {tmp_path / 'ckpt'}" in err and "exporting to" in err
    assert main([*args, str(tmp_path / "b.pt"), "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert out == f"torchscript: {tmp_path / 'b.pt'}\n"
    assert err == ""
