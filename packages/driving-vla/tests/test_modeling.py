"""DrivingVLA: shapes and bounds, the Hugging Face save/load contract, cached instructions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from carla_env import SimulatorConfig
from carla_env.contract import action_space, observation_space
from driving_vla import DrivingVLA, DrivingVLAConfig
from driving_vla.export import example_inputs


def _inputs(model: DrivingVLA, batch: int = 4) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    out = {}
    for key, zeros in zip(model.config.observation_keys, example_inputs(model, batch), strict=True):
        if zeros.dtype == torch.uint8:
            out[key] = torch.randint(0, 256, zeros.shape, dtype=torch.uint8)
        else:
            out[key] = torch.randn(zeros.shape)
    if "neighbors" in out:
        out["neighbors"][..., -1] = (torch.rand(out["neighbors"].shape[:2]) > 0.3).float()
    return out


@pytest.mark.parametrize("keys", [["state", "neighbors"], ["camera", "state", "neighbors"]])
def test_outputs_have_contract_shapes_and_bounds(keys: list[str]) -> None:
    model = DrivingVLA(DrivingVLAConfig(observation_keys=keys, trajectory_length=6))
    out = model(**_inputs(model))
    assert out.controls.shape == (4, 3) and out.waypoints.shape == (4, 6, 2)
    assert out.value.shape == (4,)
    assert torch.all((out.controls[:, [0, 2]] >= 0) & (out.controls[:, [0, 2]] <= 1))
    assert torch.all(out.controls[:, 1].abs() <= 1)


def test_default_sizes_read_the_contracts_observations_into_its_action_box() -> None:
    # The defaults come from carla_env's contract: a default model takes a sample of the
    # contract's observation space as it is, and its controls lie in the action space.
    keys = ["camera", "state", "neighbors"]
    space = observation_space(SimulatorConfig(observation_keys=keys))
    space.seed(0)
    observations = [space.sample() for _ in range(8)]
    batch = {k: np.stack([o[k] for o in observations]) for k in keys}
    for activation in ("clip", "tanh"):
        model = DrivingVLA(DrivingVLAConfig(observation_keys=keys, control_activation=activation))
        controls = model.act(batch).numpy()
        assert controls.shape == (8, *action_space().shape)
        assert all(action_space().contains(c) for c in controls), controls


def test_tanh_controls_are_sacs_squashed_action_rescaled_to_the_box() -> None:
    torch.manual_seed(0)
    clip = DrivingVLA(DrivingVLAConfig())
    tanh = DrivingVLA(DrivingVLAConfig(control_activation="tanh"))
    tanh.load_state_dict(clip.state_dict())
    inputs = _inputs(clip, batch=64)
    with torch.no_grad():
        clip.control_head.weight.mul_(20.0)  # means far outside the box
        tanh.control_head.weight.mul_(20.0)
        out_clip, out_tanh = clip(**inputs), tanh(**inputs)
    torch.testing.assert_close(out_tanh.action_mean, out_clip.action_mean, rtol=0, atol=0)
    low, high = torch.tensor([0.0, -1.0, 0.0]), torch.tensor([1.0, 1.0, 1.0])
    mean = out_tanh.action_mean
    torch.testing.assert_close(out_tanh.controls, low + (torch.tanh(mean) + 1) / 2 * (high - low))
    torch.testing.assert_close(out_clip.controls, torch.clamp(mean, low, high), rtol=0, atol=0)
    assert torch.all((out_tanh.controls >= low) & (out_tanh.controls <= high))
    assert not torch.allclose(out_tanh.controls, out_clip.controls)


def test_control_activation_survives_save_and_load(tmp_path: Path) -> None:
    model = DrivingVLA(DrivingVLAConfig(control_activation="tanh"))
    model.save_pretrained(tmp_path)
    loaded = DrivingVLA.from_pretrained(tmp_path)
    assert loaded.config.control_activation == "tanh"
    inputs = _inputs(model)
    np.testing.assert_array_equal(
        loaded.act({
            k: v.numpy() for k, v in inputs.items()
        }).numpy(),
        model(**inputs).controls.detach().numpy())


def test_checkpoints_without_control_activation_keep_clipping(tmp_path: Path) -> None:
    model = DrivingVLA(DrivingVLAConfig())
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    del config["control_activation"]  # as written before the field existed
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert DrivingVLA.from_pretrained(tmp_path).config.control_activation == "clip"


def test_absent_neighbours_do_not_matter() -> None:
    model = DrivingVLA(DrivingVLAConfig())
    inputs = _inputs(model)
    inputs["neighbors"][:, -1] = 0.0  # mark the last slot absent
    changed = {**inputs, "neighbors": inputs["neighbors"].clone()}
    changed["neighbors"][:, -1, :-1] = 99.0  # garbage in an absent slot
    torch.testing.assert_close(model(**inputs).controls, model(**changed).controls)


def test_missing_observation_is_named() -> None:
    model = DrivingVLA(DrivingVLAConfig(observation_keys=["camera", "state"]))
    with pytest.raises(ValueError, match=r"needs observation\(s\) \['camera'\]"):
        model(state=torch.zeros(1, 16))


def test_save_and_load_reproduce_the_policy(tmp_path: Path) -> None:
    model = DrivingVLA(DrivingVLAConfig(observation_keys=["camera", "state", "neighbors"]))
    inputs = _inputs(model)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "config.json").is_file() and (tmp_path / "model.safetensors").is_file()
    loaded = DrivingVLA.from_pretrained(tmp_path)
    torch.testing.assert_close(loaded(**inputs).controls, model(**inputs).controls, rtol=0, atol=0)
    numpy_obs = {k: v.numpy() for k, v in inputs.items()}
    np.testing.assert_array_equal(
        loaded.act(numpy_obs).numpy(),
        model(**inputs).controls.detach().numpy())


def test_language_model_embeds_and_caches_instructions(tiny_language_model: Path,
                                                       tmp_path: Path) -> None:
    config = DrivingVLAConfig(language_model=str(tiny_language_model), instruction="keep right")
    model = DrivingVLA(config)
    assert model.config.language_hidden_size == 32
    first = model.embed_instruction()
    assert model.embed_instruction() is first  # cached, not recomputed
    assert not torch.equal(model.embed_instruction("turn left"), first)
    inputs = _inputs(model)
    right = model(**inputs).controls
    left = model(**inputs, instruction_features=model.embed_instruction("turn left")).controls
    assert not torch.allclose(right, left)
    model.save_pretrained(tmp_path)
    saved = {p.name for p in tmp_path.iterdir()}
    assert saved == {"config.json", "model.safetensors"}  # the LM is referenced, not copied
    torch.testing.assert_close(DrivingVLA.from_pretrained(tmp_path)(**inputs).controls, right)


def test_bad_config_names_the_field() -> None:
    with pytest.raises(ValueError, match=r"observation_keys .* unknown \['lidar'\]"):
        DrivingVLAConfig(observation_keys=["lidar"])
