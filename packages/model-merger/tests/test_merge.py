"""``model-merger merge`` on real checkpoints written by FSDP in a 2-process gloo group."""

from __future__ import annotations

import copy
import json
import os
import pickle
import shutil
import struct
import zipfile
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from model_merger.cli import main
from model_merger.testing import tiny_llama_config, write_checkpoints


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny tied-embedding Llama as reference/, fsdp/ (per-rank files) and dcp/."""
    out = write_checkpoints(tmp_path_factory.mktemp("checkpoints"),
                            tiny_llama_config(tie_word_embeddings=True),
                            seed=0)
    # These tests give a DCP dir its config with --hf-config-dir, or test that it is missing.
    shutil.rmtree(out / "dcp" / "huggingface")
    return out


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _merge_fails(capsys: pytest.CaptureFixture[str], local: Path, target: Path, *extra: str,
                 names: str) -> str:
    code = main(["merge", "--local-dir", str(local), "--target-dir", str(target), *extra])
    err = capsys.readouterr().err
    assert code == 2, err
    assert names in err, err
    assert not target.exists()
    assert not [p for p in target.parent.iterdir() if p.name.startswith(f".{target.name}.")]
    return err


def _assert_same_model(merged_dir: Path, reference_dir: Path) -> None:
    merged = AutoModelForCausalLM.from_pretrained(merged_dir, dtype=torch.float32)
    reference = AutoModelForCausalLM.from_pretrained(reference_dir, dtype=torch.float32)
    got, want = merged.state_dict(), reference.state_dict()
    assert set(got) == set(want)
    for name, tensor in want.items():
        assert got[name].dtype == tensor.dtype, name
        assert torch.equal(got[name], tensor), name
    assert merged.lm_head.weight.data_ptr() == merged.model.embed_tokens.weight.data_ptr()
    ids = torch.tensor([[1, 5, 17, 42, 99, 127, 3]])
    with torch.no_grad():
        assert torch.equal(merged(ids).logits, reference(ids).logits)


@pytest.mark.parametrize("layout", ["fsdp", "dcp"])
def test_merge_is_bit_exact(checkpoints: Path, tmp_path: Path, layout: str) -> None:
    target = tmp_path / "merged"
    extra = [] if layout == "fsdp" else ["--hf-config-dir", str(checkpoints / "fsdp/huggingface")]
    assert main([
        "merge", "--local-dir",
        str(checkpoints / layout), "--target-dir",
        str(target), "--max-shard-size", "100KB", "--verify", *extra
    ]) == 0
    index = json.loads((target / "model.safetensors.index.json").read_text())
    shards = sorted({*index["weight_map"].values()})
    assert len(shards) > 1 and all((target / s).is_file() for s in shards)
    assert "lm_head.weight" not in index["weight_map"]  # tied to the embedding
    _assert_same_model(target, checkpoints / "reference")


def test_bf16_output_in_one_file(checkpoints: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    target = tmp_path / "merged"
    assert main([
        "merge", "--local_dir",
        str(checkpoints / "fsdp"), "--target_dir",
        str(target), "--dtype", "bf16"
    ]) == 0
    assert not (target / "model.safetensors.index.json").exists()
    assert json.loads((target / "config.json").read_text())["dtype"] == "bfloat16"
    got = load_file(target / "model.safetensors")
    want = AutoModelForCausalLM.from_pretrained(checkpoints / "reference").state_dict()
    for name, tensor in got.items():
        assert tensor.dtype == torch.bfloat16
        assert torch.equal(tensor, want[name].to(torch.bfloat16)), name


def test_existing_target_needs_overwrite(checkpoints: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "merged"
    target.mkdir()
    (target / "config.json").write_text("{}")
    args = ["merge", "--local-dir", str(checkpoints / "fsdp"), "--target-dir", str(target)]
    assert main(args) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (target / "config.json").read_text() == "{}"
    assert main([*args, "--overwrite"]) == 0
    assert (target / "model.safetensors").is_file()
    assert json.loads((target / "config.json").read_text())["model_type"] == "llama"


def test_missing_rank_file(checkpoints: Path, tmp_path: Path,
                           capsys: pytest.CaptureFixture[str]) -> None:
    local = _copy(checkpoints / "fsdp", tmp_path / "ckpt")
    (local / "model_world_size_2_rank_1.pt").unlink()
    _merge_fails(capsys, local, tmp_path / "out", names="model_world_size_2_rank_1.pt")


def test_world_sizes_disagree(checkpoints: Path, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    local = _copy(checkpoints / "fsdp", tmp_path / "ckpt")
    shutil.copy(local / "model_world_size_2_rank_0.pt", local / "model_world_size_4_rank_2.pt")
    _merge_fails(capsys, local, tmp_path / "out", names="model_world_size_4_rank_2.pt")


def test_fsdp_config_world_size_disagrees(checkpoints: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    local = _copy(checkpoints / "fsdp", tmp_path / "ckpt")
    (local / "fsdp_config.json").write_text('{"FSDP_version": 1, "world_size": 4}')
    _merge_fails(capsys, local, tmp_path / "out", names="fsdp_config.json")


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_corrupt_rank_file(checkpoints: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                           damage: str) -> None:
    local = _copy(checkpoints / "fsdp", tmp_path / "ckpt")
    shard = local / "model_world_size_2_rank_1.pt"
    data = shard.read_bytes()
    shard.write_bytes(data[:len(data) // 2] if damage == "truncated" else b"\0" * len(data))
    _merge_fails(capsys, local, tmp_path / "out", names="model_world_size_2_rank_1.pt")


def test_shards_that_do_not_tile(checkpoints: Path, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    local = _copy(checkpoints / "fsdp", tmp_path / "ckpt")
    shard = local / "model_world_size_2_rank_1.pt"
    state = torch.load(shard, weights_only=False)
    name = "model.layers.0.mlp.up_proj.weight"
    state[name]._local_tensor = state[name]._local_tensor[:10].clone()
    torch.save(state, shard)
    err = _merge_fails(capsys, local, tmp_path / "out", names="model_world_size_2_rank_1.pt")
    assert "do not tile" in err and name in err


def test_missing_huggingface_config(checkpoints: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    local = _copy(checkpoints / "fsdp", tmp_path / "ckpt")
    (local / "huggingface" / "config.json").unlink()
    _merge_fails(capsys, local, tmp_path / "out", names="huggingface/config.json")
    dcp_local = _copy(checkpoints / "dcp", tmp_path / "dcp")
    _merge_fails(capsys, dcp_local, tmp_path / "out", names="dcp/huggingface/config.json")


def test_truncated_dcp_file(checkpoints: Path, tmp_path: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    local = _copy(checkpoints / "dcp", tmp_path / "dcp")
    shutil.copytree(checkpoints / "fsdp" / "huggingface", local / "huggingface")
    data = (local / "__1_0.distcp").read_bytes()
    (local / "__1_0.distcp").write_bytes(data[:len(data) // 2])
    _merge_fails(capsys, local, tmp_path / "out", names="__1_0.distcp")


def test_dcp_chunks_that_do_not_tile(checkpoints: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    local = _copy(checkpoints / "dcp", tmp_path / "dcp")
    shutil.copytree(checkpoints / "fsdp" / "huggingface", local / "huggingface")
    with open(local / ".metadata", "rb") as handle:
        metadata = pickle.load(handle)
    metadata.state_dict_metadata["model.norm.weight"].chunks.pop()
    with open(local / ".metadata", "wb") as handle:
        pickle.dump(metadata, handle)
    err = _merge_fails(capsys, local, tmp_path / "out", names=".metadata")
    assert "do not tile" in err and "model.norm.weight" in err


def test_verify_compares_logits_with_the_source_config(checkpoints: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Every tensor right, but a written config that runs them differently: caught by logits."""
    import model_merger.merge as merge_module

    real_write_config = merge_module._write_config

    def other_rope(hf_dir: Path, tmp: Path, config: dict[str, object], *args: object) -> None:
        real_write_config(hf_dir, tmp, config, *args)  # type: ignore[arg-type]
        written = json.loads((tmp / "config.json").read_text())
        written["rope_parameters"] = {"rope_type": "default", "rope_theta": 50.0}
        (tmp / "config.json").write_text(json.dumps(written))

    monkeypatch.setattr(merge_module, "_write_config", other_rope)
    err = _merge_fails(capsys,
                       checkpoints / "fsdp",
                       tmp_path / "out",
                       "--verify",
                       names="logits on a fixed prompt differ")
    assert "verification failed" in err


def test_verify_catches_a_bad_write(checkpoints: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import model_merger.merge as merge_module

    class FlipOneValue(merge_module.SafetensorsWriter):
        """Writes the tensor's first value wrong, whichever way its bytes arrive."""

        def close(self) -> None:
            if "model.layers.1.mlp.down_proj.weight" in self.order:
                _, _, offset, _ = self._layout["model.layers.1.mlp.down_proj.weight"]
                os.pwrite(self._fd, struct.pack("<f", 12345.0), self._data_start + offset)
            super().close()

    monkeypatch.setattr(merge_module, "SafetensorsWriter", FlipOneValue)
    err = _merge_fails(capsys,
                       checkpoints / "fsdp",
                       tmp_path / "out",
                       "--verify",
                       names="model.layers.1.mlp.down_proj.weight")
    assert "verification failed" in err


def test_tied_embeddings_that_differ(checkpoints: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    local = _copy(checkpoints / "fsdp", tmp_path / "ckpt")
    shard = local / "model_world_size_2_rank_1.pt"
    state = torch.load(shard, weights_only=False)
    head = copy.deepcopy(state["model.embed_tokens.weight"])
    head._local_tensor = head._local_tensor + 1
    state["lm_head.weight"] = head
    torch.save(state, shard)
    err = _merge_fails(capsys, local, tmp_path / "out", names="huggingface/config.json")
    assert "lm_head.weight" in err


def test_target_that_holds_the_input_is_refused(checkpoints: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    local = _copy(checkpoints / "fsdp", tmp_path / "run" / "actor")
    args = ["merge", "--local-dir", str(local), "--overwrite", "--target-dir"]
    for target in (local, tmp_path / "run"):
        assert main([*args, str(target)]) == 2
        assert "would replace it" in capsys.readouterr().err
        assert (local / "model_world_size_2_rank_0.pt").is_file()


def test_sharded_init_checkpoints_merge(tmp_path: Path) -> None:
    """The benchmark's checkpoints: each rank fills only its own shards."""
    config = tiny_llama_config()
    with pytest.raises(ValueError, match="no reference"):
        write_checkpoints(tmp_path / "bad", config, sharded_init=True)
    out = write_checkpoints(tmp_path / "ckpt",
                            config,
                            layouts=("fsdp",),
                            reference=False,
                            sharded_init=True)
    assert main([
        "merge", "--local-dir",
        str(out / "fsdp"), "--target-dir",
        str(tmp_path / "merged"), "--verify"
    ]) == 0
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged").state_dict()
    reference = AutoModelForCausalLM.from_config(config).state_dict()
    assert {n: t.shape for n, t in merged.items()} == {n: t.shape for n, t in reference.items()}
    head = merged["lm_head.weight"]
    assert 0.015 < head.std().item() < 0.025  # N(0, 0.02) on both halves, not left empty
    assert not torch.equal(head[:64], head[64:])


def _flip_bit_in_tensor(shard: Path, name: str) -> str:
    """Flip one exponent bit in the middle of tensor ``name``'s bytes in a rank file; return
    the zip entry holding them, as ``zipfile``'s own CRC check names it."""
    state = torch.load(shard, weights_only=False)
    data = state[name].to_local().contiguous().numpy().tobytes()
    raw = bytearray(shard.read_bytes())
    start = raw.find(data)
    assert start > 0 and raw.find(data, start + 1) == -1  # found, once
    with zipfile.ZipFile(shard) as archive:
        assert archive.testzip() is None
    middle = start + len(data) // 2 // 4 * 4
    raw[middle + 3] ^= 0x40  # fp32, little-endian: the top exponent bit, a value times 2^128
    shard.write_bytes(bytes(raw))
    with zipfile.ZipFile(shard) as archive:
        entry = archive.testzip()
    assert entry is not None and "/data/" in entry
    return entry


@pytest.mark.parametrize("extra", [["--verify"], ["--dtype", "bf16"], []],
                         ids=["verify-copied", "cast-loaded", "copied"])
def test_corrupt_byte_in_rank_data_is_refused(checkpoints: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str],
                                              extra: list[str]) -> None:
    """A flipped bit in tensor data, whether its bytes are copied or loaded and cast."""
    local = _copy(checkpoints / "fsdp", tmp_path / "ckpt")
    entry = _flip_bit_in_tensor(local / "model_world_size_2_rank_1.pt",
                                "model.layers.1.mlp.down_proj.weight")
    err = _merge_fails(capsys,
                       local,
                       tmp_path / "out",
                       *extra,
                       names="model_world_size_2_rank_1.pt: zip entry")
    assert f"'{entry}' is corrupt" in err and "CRC-32" in err


def test_rank_files_saved_without_crcs_merge_with_a_warning(
        checkpoints: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    local = _copy(checkpoints / "fsdp", tmp_path / "ckpt")
    shard = local / "model_world_size_2_rank_1.pt"
    state = torch.load(shard, weights_only=False)
    torch.serialization.set_crc32_options(False)
    try:
        torch.save(state, shard)
    finally:
        torch.serialization.set_crc32_options(True)
    with zipfile.ZipFile(shard) as archive:
        assert all(info.CRC == 0 for info in archive.infolist())
    assert main(["merge", "--local-dir", str(local), "--target-dir", str(tmp_path / "out")]) == 0
    assert "model_world_size_2_rank_1.pt: saved without CRC-32s" in caplog.text
    _assert_same_model(tmp_path / "out", checkpoints / "reference")


@pytest.mark.parametrize("value", [float("inf"), float("nan")])
def test_verify_refuses_non_finite_weights(checkpoints: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str],
                                           value: float) -> None:
    """Saved that way by training (the CRCs are right): a merge copies it, --verify refuses."""
    local = _copy(checkpoints / "fsdp", tmp_path / "ckpt")
    shard = local / "model_world_size_2_rank_0.pt"
    state = torch.load(shard, weights_only=False)
    name = "model.layers.0.self_attn.q_proj.weight"
    state[name]._local_tensor[3, 5] = value
    torch.save(state, shard)
    assert main(["merge", "--local-dir", str(local), "--target-dir", str(tmp_path / "plain")]) == 0
    err = _merge_fails(capsys, local, tmp_path / "out", "--verify", names=name)
    assert "verification failed" in err and "1 non-finite value(s)" in err
