"""Checkpoint layouts are recognised from real files; incomplete ones are refused by name."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed.checkpoint as dcp
from transformers import LlamaConfig

from model_merger.cli import main
from model_merger.formats import CheckpointError, detect_checkpoint


def _fsdp_dir(tmp_path: Path, world: int, ranks: list[int]) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    for rank in ranks:
        torch.save({"w": torch.full((2, 3), float(rank))},
                   tmp_path / f"model_world_size_{world}_rank_{rank}.pt")
    LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                num_attention_heads=2).save_pretrained(tmp_path / "huggingface")
    return tmp_path


def test_fsdp_rank_files(tmp_path: Path) -> None:
    info = detect_checkpoint(_fsdp_dir(tmp_path, 2, [0, 1]))
    assert (info.format, info.world_size) == ("fsdp", 2)
    assert [f.name for f in info.files
           ] == ["model_world_size_2_rank_0.pt", "model_world_size_2_rank_1.pt"]


def test_missing_rank_is_named(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"missing rank file.*model_world_size_3_rank_1\.pt"):
        detect_checkpoint(_fsdp_dir(tmp_path, 3, [0, 2]))


def test_world_sizes_that_disagree(tmp_path: Path) -> None:
    _fsdp_dir(tmp_path, 2, [0, 1])
    torch.save({}, tmp_path / "model_world_size_4_rank_2.pt")
    with pytest.raises(CheckpointError, match="disagree on the world size"):
        detect_checkpoint(tmp_path)


def test_missing_huggingface_config(tmp_path: Path) -> None:
    torch.save({}, tmp_path / "model_world_size_1_rank_0.pt")
    with pytest.raises(CheckpointError, match=r"no huggingface/config\.json"):
        detect_checkpoint(tmp_path)


def test_dcp_directory(tmp_path: Path) -> None:
    dcp.save({"w": torch.arange(6.0).reshape(2, 3)}, checkpoint_id=tmp_path)
    info = detect_checkpoint(tmp_path)
    assert info.format == "dcp" and info.files


def test_lora_adapter(tmp_path: Path) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaForCausalLM

    base = LlamaForCausalLM(
        LlamaConfig(vocab_size=64,
                    hidden_size=16,
                    intermediate_size=32,
                    num_hidden_layers=1,
                    num_attention_heads=2,
                    num_key_value_heads=2))
    get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj"])).save_pretrained(tmp_path)
    info = detect_checkpoint(tmp_path)
    assert info.format == "lora"
    assert info.files[1].name == "adapter_model.safetensors"


def test_inspect_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(_fsdp_dir(tmp_path / "ok", 2, [0, 1]))]) == 0
    assert "fsdp" in capsys.readouterr().out
    (tmp_path / "empty").mkdir()
    assert main(["inspect", str(tmp_path / "empty")]) == 2
    assert "no checkpoint found" in capsys.readouterr().err
