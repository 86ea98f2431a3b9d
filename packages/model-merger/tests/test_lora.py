"""``model-merger merge`` of peft LoRA adapters, against peft's own ``merge_and_unload``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM, LlamaForCausalLM

from model_merger.cli import main
from model_merger.testing import tiny_llama_config

_IDS = torch.tensor([[1, 5, 17, 42, 99, 127, 3, 64]])


def _base(path: Path, dtype: torch.dtype, tied: bool, max_shard_size: str = "5GB") -> Path:
    torch.manual_seed(0)
    config = tiny_llama_config(tie_word_embeddings=tied, attention_bias=True)
    LlamaForCausalLM(config).to(dtype).save_pretrained(path, max_shard_size=max_shard_size)
    return path


def _train_adapter(base: Path, out: Path, **lora: Any) -> Path:
    """A few real optimiser steps, so lora_B is not zero and every adapter weight matters."""
    torch.manual_seed(1)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base, dtype="auto"),
                           LoraConfig(lora_dropout=0.0, task_type="CAUSAL_LM", **lora))
    params = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(params, lr=2e-2)
    batch = torch.randint(0, 128, (4, 16), generator=torch.Generator().manual_seed(2))
    for _ in range(4):
        model(input_ids=batch, labels=batch).loss.backward()
        optimiser.step()
        optimiser.zero_grad()
    model.save_pretrained(out)
    return out


def _reference(base: Path, adapter: Path) -> torch.nn.Module:
    model = AutoModelForCausalLM.from_pretrained(base, dtype="auto")
    return PeftModel.from_pretrained(model, adapter).merge_and_unload()


CASES: dict[str, dict[str, Any]] = {
    "linear-fp32":
        dict(dtype=torch.float32,
             tied=False,
             lora=dict(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"])),
    "rslora-patterns-modules-to-save":
        dict(dtype=torch.float32,
             tied=False,
             lora=dict(r=8,
                       lora_alpha=16,
                       use_rslora=True,
                       rank_pattern={"v_proj": 2},
                       alpha_pattern={"down_proj": 3},
                       target_modules=["q_proj", "v_proj", "o_proj", "down_proj", "gate_proj"],
                       modules_to_save=["lm_head"])),
    "bf16-tied-embedding":
        dict(dtype=torch.bfloat16,
             tied=True,
             lora=dict(r=4, lora_alpha=4, target_modules=["embed_tokens", "k_proj", "up_proj"])),
    "dora-sharded-base":
        dict(dtype=torch.float32,
             tied=False,
             shard="60KB",
             lora=dict(r=4, lora_alpha=8, use_dora=True, target_modules=["q_proj", "up_proj"])),
}


@pytest.mark.parametrize("case", list(CASES))
def test_lora_merge_matches_peft_merge_and_unload(case: str, tmp_path: Path) -> None:
    spec = CASES[case]
    base = _base(tmp_path / "base", spec["dtype"], spec["tied"], spec.get("shard", "5GB"))
    adapter = _train_adapter(base, tmp_path / "adapter", **spec["lora"])
    assert json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"]
    out = tmp_path / "merged"
    assert main([
        "merge", "--local-dir",
        str(adapter), "--target-dir",
        str(out), "--base-model",
        str(base), "--verify", "--max-shard-size", "100KB"
    ]) == 0
    assert (out / "model.safetensors.index.json").is_file()

    want = _reference(base, adapter)
    got = AutoModelForCausalLM.from_pretrained(out, dtype="auto")
    want_state, got_state = want.state_dict(), got.state_dict()
    assert set(got_state) == set(want_state)
    changed = 0
    base_state = AutoModelForCausalLM.from_pretrained(base, dtype="auto").state_dict()
    for name, tensor in want_state.items():
        assert got_state[name].dtype == tensor.dtype == spec["dtype"], name
        assert torch.equal(got_state[name], tensor), name
        changed += not torch.equal(tensor, base_state[name])
    assert changed >= 4  # the adapter really changed weights
    with torch.no_grad():
        assert torch.equal(got(_IDS).logits, want(_IDS).logits)


def test_base_model_defaults_to_the_adapters_and_dtype_casts(tmp_path: Path) -> None:
    base = _base(tmp_path / "base", torch.float32, tied=False)
    adapter = _train_adapter(base, tmp_path / "adapter", r=2, target_modules=["q_proj"])
    out = tmp_path / "merged"
    assert main(["merge", "--local-dir",
                 str(adapter), "--target-dir",
                 str(out), "--dtype", "bf16"]) == 0
    want = _reference(base, adapter).state_dict()
    got = AutoModelForCausalLM.from_pretrained(out, dtype="auto").state_dict()
    for name, tensor in want.items():
        assert torch.equal(got[name], tensor.to(torch.bfloat16)), name
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"


def _fails(capsys: pytest.CaptureFixture[str], args: list[str], target: Path, *names: str) -> None:
    assert main(["merge", *args, "--target-dir", str(target)]) == 2
    err = capsys.readouterr().err
    for name in names:
        assert name in err, err
    assert not target.exists()
    assert not [p for p in target.parent.iterdir() if p.name.startswith(f".{target.name}.")]


def test_lora_bad_inputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = _base(tmp_path / "base", torch.float32, tied=False)
    adapter = _train_adapter(base, tmp_path / "adapter", r=2, target_modules=["q_proj"])
    out = tmp_path / "out"

    # The adapter's base is gone and no --base-model is given: named, nothing fetched.
    moved = shutil.move(base, tmp_path / "elsewhere")
    _fails(capsys, ["--local-dir", str(adapter)], out, str(base))
    # A base of another shape: peft's loader names the adapter tensor that does not fit.
    other = tmp_path / "other"
    LlamaForCausalLM(tiny_llama_config(hidden_size=32, intermediate_size=64)).save_pretrained(other)
    _fails(capsys, ["--local-dir", str(adapter), "--base-model", str(other)], out, "q_proj")
    # An adapter whose weights file is cut short.
    weights = adapter / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    _fails(capsys, ["--local-dir", str(adapter), "--base-model",
                    str(moved)], out, "adapter_model.safetensors")
    # --base-model on a non-LoRA checkpoint, --hf-config-dir on an adapter.
    _fails(capsys, ["--local-dir", str(adapter), "--hf-config-dir",
                    str(moved)], out, "--base-model")


def test_lora_that_merges_to_non_finite_weights(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from safetensors.torch import load_file, save_file

    base = _base(tmp_path / "base", torch.float32, tied=False)
    adapter = _train_adapter(base, tmp_path / "adapter", r=2, target_modules=["q_proj"])
    weights = load_file(adapter / "adapter_model.safetensors")
    name = "base_model.model.model.layers.1.self_attn.q_proj.lora_B.weight"
    weights[name][0, 0] = float("inf")
    save_file(weights, adapter / "adapter_model.safetensors")
    _fails(capsys, ["--local-dir", str(adapter)], tmp_path / "out",
           "model.layers.1.self_attn.q_proj", "non-finite")
