"""Merge a sharded training checkpoint or a LoRA adapter into a Hugging Face model directory.

Every merged tensor's shape is known from metadata before any data is read, so the output
shards and their safetensors headers are planned first; then tensors are read, joined, cast and
written to their place a batch of at most ``_BATCH_BYTES`` (or one tensor) at a time, so memory
stays at about the largest tensor whatever the model's size. Everything goes to a temporary
directory beside the target that is renamed into place only when complete.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import split_torch_state_dict_into_shards
from tqdm.auto import tqdm

from model_merger.formats import CheckpointError, CheckpointInfo, detect_checkpoint
from model_merger.modeling import build_model, model_class
from model_merger.safetensors_stream import SafetensorsWriter
from model_merger.sources import DcpSource, FsdpSource, Plan, Source
from trainyard_core.cli import progress_enabled
from trainyard_core.io import atomic_directory

__all__ = ["BACKENDS", "DTYPES", "MergeConfig", "MergeResult", "merge", "parse_size"]

BACKENDS = ("auto", "fsdp", "dcp", "lora")
DTYPES: dict[str, torch.dtype | None] = {
    "auto": None,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
    "fp32": torch.float32,
}
_WEIGHT_FILE = re.compile(r"(\.safetensors|\.bin|\.pt|\.pth|\.safetensors\.index\.json|"
                          r"\.bin\.index\.json)$")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*$", re.IGNORECASE)
# Tensors read per batch: DCP plans each load call, so one call per tensor would be slow on
# models with thousands of small tensors; a tensor larger than this is read alone.
_BATCH_BYTES = 256 * 2**20
# Files of a peft adapter directory that describe the tokenizer, carried over when present.
_TOKENIZER_FILE = re.compile(r"^(tokenizer.*|special_tokens_map\.json|added_tokens\.json|"
                             r"chat_template\..*|vocab\..*|merges\.txt|spiece\.model)$")


def parse_size(text: str) -> int:
    """``"5GB"`` -> 5_000_000_000, ``"512MiB"`` -> 536_870_912, ``"1000"`` -> 1000 bytes."""
    match = _SIZE.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a size (write e.g. 5GB, 500MB or 2GiB)")
    number, unit = float(match.group(1)), (match.group(2) or "B").upper()
    scale = 1 if unit == "B" else (1024 if "I" in unit else 1000)**("KMGT".index(unit[0]) + 1)
    size = int(number * scale)
    if size <= 0:
        raise ValueError(f"{text!r}: the size must be positive")
    return size


@dataclasses.dataclass
class MergeConfig:
    """Settings of ``model-merger merge``."""

    local_dir: str = dataclasses.field(
        metadata={
            "help": "checkpoint: verl's global_step_N/actor, a DCP directory or a peft adapter",
            "flags": ("--local_dir",)
        })
    target_dir: str = dataclasses.field(
        metadata={
            "help": "where the Hugging Face model directory is written",
            "flags": ("--target_dir", "--save-dir")
        })
    backend: str = dataclasses.field(
        default="auto", metadata={"help": "checkpoint layout: auto (detect), fsdp, dcp or lora"})
    dtype: str = dataclasses.field(
        default="auto",
        metadata={"help": "output dtype: auto (as stored in the checkpoint), bf16, fp16, fp32"})
    max_shard_size: str = dataclasses.field(
        default="5GB", metadata={"help": "largest output safetensors file, e.g. 5GB or 500MB"})
    hf_config_dir: str | None = dataclasses.field(
        default=None,
        metadata={
            "help": "directory with config.json and tokenizer files; unset: LOCAL_DIR/huggingface",
            "flags": ("--hf_model_path",)
        })
    overwrite: bool = dataclasses.field(default=False,
                                        metadata={"help": "replace an existing TARGET_DIR"})
    verify: bool = dataclasses.field(
        default=False,
        metadata={
            "help": "before publishing, load the result with transformers, compare every "
                    "tensor with the checkpoint and the logits on a fixed prompt with the "
                    "checkpoint's config, refusing non-finite weights or logits (holds the "
                    "whole model in memory once, plus at most 256 MiB of checkpoint tensors)"
        })
    base_model: str | None = dataclasses.field(
        default=None,
        metadata={
            "help": "LoRA only: the base model directory (or Hub id) the adapter was trained "
                    "on; unset: the adapter's base_model_name_or_path"
        })
    hf_upload_path: str | None = dataclasses.field(
        default=None,
        metadata={
            "help": "after merging, upload TARGET_DIR to this Hub model repo (user/repo, "
                    "created if missing); token: HF_TOKEN",
            "flags": ("--hf_upload_path",)
        })
    private: bool = dataclasses.field(
        default=False,
        metadata={
            "help": "with --hf-upload-path: create the Hub repo as private (an existing repo "
                    "keeps its visibility)"
        })
    dry_run: bool = dataclasses.field(
        default=False,
        metadata={
            "help": "with --hf-upload-path: merge, then list what would be uploaded and where; "
                    "upload nothing (no HF_TOKEN needed)",
            "flags": ("--dry_run",)
        })

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"backend={self.backend!r}: expected one of {', '.join(BACKENDS)}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype={self.dtype!r}: expected one of {', '.join(DTYPES)}")
        parse_size(self.max_shard_size)


@dataclasses.dataclass(frozen=True)
class MergeResult:
    """What ``merge`` wrote."""

    target: Path
    format: str
    tensors: int
    total_bytes: int
    files: tuple[str, ...]
    verified: bool = False


def _hf_config_dir(cfg: MergeConfig, info: CheckpointInfo) -> Path:
    if cfg.hf_config_dir is not None:
        directory = Path(cfg.hf_config_dir)
    else:
        directory = info.hf_config_dir or info.path / "huggingface"
    if not (directory / "config.json").is_file():
        raise CheckpointError(f"{directory / 'config.json'}: missing; the merged model needs "
                              "the Hugging Face config (verl saves it in LOCAL_DIR/huggingface; "
                              "otherwise pass --hf-config-dir)")
    return directory


def _read_config(config_file: Path) -> dict[str, Any]:
    try:
        config = json.loads(config_file.read_text())
    except ValueError as exc:
        raise CheckpointError(f"{config_file}: not valid JSON ({exc})") from exc
    if not isinstance(config, dict):
        raise CheckpointError(f"{config_file}: not a JSON object")
    return config


def _tied_duplicate(config: dict[str, Any], config_file: Path, source: Source,
                    plan: Plan) -> str | None:
    """``lm_head.weight`` when the config ties it to the input embedding.

    Both names are in the state dict, but transformers re-ties them on load and refuses a file
    that holds both, so only the embedding is written, once checked to be the same tensor."""
    head, embed = "lm_head.weight", "model.embed_tokens.weight"
    if not config.get("tie_word_embeddings", False) or head not in plan or embed not in plan:
        return None
    pair = source.load([head, embed])
    if pair[head].shape != pair[embed].shape or not torch.equal(pair[head], pair[embed]):
        raise CheckpointError(f"{config_file}: tie_word_embeddings is true but the checkpoint's "
                              f"{head} and {embed} differ")
    return head


def _write_config(hf_dir: Path, tmp: Path, config: dict[str, Any],
                  out_dtype: torch.dtype | None) -> None:
    if out_dtype is None:
        shutil.copy2(hf_dir / "config.json", tmp / "config.json")
        return
    name = str(out_dtype).removeprefix("torch.")
    for key in ("dtype", "torch_dtype"):
        if key in config or key == "dtype":
            config[key] = name
    (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def _batches(names: list[str], specs: Plan) -> Iterator[list[str]]:
    """Consecutive names in groups of at most ``_BATCH_BYTES`` (a larger tensor alone)."""
    batch: list[str] = []
    size = 0
    for name in names:
        shape, dtype = specs[name]
        nbytes = torch.Size(shape).numel() * dtype.itemsize
        if batch and size + nbytes > _BATCH_BYTES:
            yield batch
            batch, size = [], 0
        batch.append(name)
        size += nbytes
    if batch:
        yield batch


def _prompt_ids(tmp: Path, vocab_size: int) -> torch.Tensor:
    """A fixed prompt: tokenized text when a tokenizer came along, else fixed token ids."""
    try:
        from transformers import AutoTokenizer

        ids = AutoTokenizer.from_pretrained(tmp)("The quick brown fox jumps over",
                                                 return_tensors="pt")["input_ids"]
        if ids.numel():
            return ids
    except (OSError, ValueError, KeyError, TypeError):
        pass  # no usable tokenizer files: fixed ids exercise the same weights
    return (torch.arange(16) * 7919 % max(vocab_size, 1)).unsqueeze(0)


def _verify(tmp: Path, hf_dir: Path, config: dict[str, Any], source: Source,
            split_files: dict[str, list[str]], out_dtype: torch.dtype | None) -> None:
    """Load the written model with transformers and compare it with the sources.

    Every tensor must equal the source's (shape, dtype and values) and be finite. For a causal
    LM the loaded model's logits on a fixed prompt must also be finite and equal those of a
    model built from the *source* config: that catches a written config that loads the right
    weights but runs them differently (ties, norms, RoPE). The reference model is given the
    loaded tensors, which were just found equal to the source's, so the model is held in
    memory once; the source tensors are read a batch at a time and dropped."""
    import transformers
    from transformers.initialization import no_init_weights

    cls = model_class(config.get("architectures"))
    model = cls.from_pretrained(tmp, dtype="auto")
    state = model.state_dict()
    written = {name for names in split_files.values() for name in names}
    # Tied parameters (lm_head sharing the embedding) are written once and share its storage.
    shared = {state[name].data_ptr() for name in written if name in state}
    expected = written | {n for n in state if n not in written and state[n].data_ptr() in shared}
    if set(state) != expected:
        missing = sorted(expected - set(state))[:3]
        extra = sorted(set(state) - expected)[:3]
        raise CheckpointError(f"{tmp}: the model transformers loads does not match the "
                              f"checkpoint (missing {missing}, unexpected {extra})")
    for names in split_files.values():
        specs: Plan = {name: (state[name].shape, state[name].dtype) for name in names}
        for batch in _batches(list(names), specs):
            for name, tensor in source.load(batch, out_dtype).items():
                # First: a NaN never equals itself, so it would read as a bad write.
                if tensor.is_floating_point() and not torch.isfinite(tensor).all():
                    bad = int((~torch.isfinite(tensor)).sum())
                    raise CheckpointError(f"{tmp}: verification failed: tensor {name} holds "
                                          f"{bad} non-finite value(s) (inf or nan)")
                if state[name].dtype != tensor.dtype or not torch.equal(state[name], tensor):
                    raise CheckpointError(f"{tmp}: verification failed: tensor {name} as loaded "
                                          "by transformers differs from the checkpoint")
    if not (hasattr(model, "generate") and getattr(model, "can_generate", lambda: False)()):
        return
    # Parameters are left uninitialised (untouched pages cost no memory) and then replaced by
    # the verified tensors; buffers (RoPE) are computed from the source config.
    with no_init_weights():
        reference = build_model(cls, transformers.AutoConfig.from_pretrained(hf_dir), model.dtype)
    reference.load_state_dict({name: state[name] for name in written}, strict=False, assign=True)
    reference.tie_weights()
    filled = {state[name].data_ptr() for name in written}
    leftover = [n for n, p in reference.named_parameters() if p.data_ptr() not in filled]
    if leftover:
        raise CheckpointError(f"{tmp}: the checkpoint does not fill parameter(s) {leftover[:3]} "
                              f"of {cls.__name__}")
    ids = _prompt_ids(tmp, int(getattr(model.config, "vocab_size", 0) or 0))
    model.eval()
    reference.eval()
    with torch.no_grad():
        got, want = model(ids).logits, reference(ids).logits
    if not torch.isfinite(got).all():
        raise CheckpointError(f"{tmp}: verification failed: the merged model's logits on a "
                              "fixed prompt are not finite")
    if not torch.equal(got, want):
        diff = (got.float() - want.float()).abs().max().item()
        raise CheckpointError(f"{tmp}: verification failed: logits on a fixed prompt differ "
                              f"from the checkpoint's by up to {diff:.3g}")


def _open_source(cfg: MergeConfig, info: CheckpointInfo) -> tuple[Source, Path]:
    """The checkpoint's reader and the directory holding its Hugging Face config."""
    if info.format == "lora":
        from model_merger.lora import LoraSource

        if cfg.hf_config_dir is not None:
            raise CheckpointError(f"{info.path}: a LoRA adapter takes its config from the base "
                                  "model; pass --base-model, not --hf-config-dir")
        lora = LoraSource(info, cfg.base_model)
        return lora, lora.base_dir
    if cfg.base_model is not None:
        raise CheckpointError(f"{info.path}: --base-model is for LoRA adapters, but this is a "
                              f"{info.format} checkpoint")
    hf_dir = _hf_config_dir(cfg, info)
    return (FsdpSource(info) if info.format == "fsdp" else DcpSource(info)), hf_dir


def _carry_files(hf_dir: Path, info: CheckpointInfo, tmp: Path) -> list[str]:
    """Copy the config's companions (generation config, tokenizer): a LoRA adapter's own
    tokenizer files win over the base model's, since training may have added tokens."""
    carried: dict[str, Path] = {}
    for item in sorted(hf_dir.iterdir()):
        if item.is_file() and item.name != "config.json" and not _WEIGHT_FILE.search(item.name):
            carried[item.name] = item
    if info.format == "lora":
        for item in sorted(info.path.iterdir()):
            if item.is_file() and _TOKENIZER_FILE.match(item.name):
                carried[item.name] = item
    for name, item in carried.items():
        shutil.copy2(item, tmp / name)
    return list(carried)


def merge(cfg: MergeConfig) -> MergeResult:
    """Merge ``cfg.local_dir`` into a Hugging Face model directory at ``cfg.target_dir``."""
    target = Path(cfg.target_dir)
    if target.exists() and not cfg.overwrite and (not target.is_dir() or any(target.iterdir())):
        raise CheckpointError(f"{target}: already exists (pass --overwrite to replace it)")
    info = detect_checkpoint(cfg.local_dir, require_hf_config=cfg.hf_config_dir is None)
    if cfg.backend != "auto" and cfg.backend != info.format:
        raise CheckpointError(f"{info.path}: --backend {cfg.backend} but the directory holds "
                              f"a {info.format} checkpoint")
    source, hf_dir = _open_source(cfg, info)
    for inside in (info.path, hf_dir):
        if inside.resolve().is_relative_to(target.resolve()):
            raise CheckpointError(f"{target}: holds the input {inside}; writing the merged "
                                  "model there would replace it (choose another --target-dir)")
    config = _read_config(hf_dir / "config.json")
    plan = source.plan()
    if not plan:
        raise CheckpointError(f"{info.path}: the checkpoint holds no tensors")
    tied = _tied_duplicate(config, hf_dir / "config.json", source, plan)
    if tied is not None:
        del plan[tied]
    out_dtype = DTYPES[cfg.dtype]
    specs: Plan = {name: (shape, out_dtype or dtype) for name, (shape, dtype) in plan.items()}
    meta = {
        name: torch.empty(shape, dtype=dtype, device="meta")
        for name, (shape, dtype) in specs.items()
    }
    split = split_torch_state_dict_into_shards(meta,
                                               filename_pattern="model{suffix}.safetensors",
                                               max_shard_size=parse_size(cfg.max_shard_size))
    total = sum(t.numel() * t.element_size() for t in meta.values())
    del meta
    files = []
    progress = tqdm(total=total,
                    unit="B",
                    unit_scale=True,
                    unit_divisor=1024,
                    desc=f"merging {info.format} into {target.name}",
                    disable=not progress_enabled())
    with progress, atomic_directory(target, overwrite=target.exists()) as tmp:
        for filename, names in split.filename_to_tensors.items():
            file_specs = {name: specs[name] for name in names}
            with SafetensorsWriter(tmp / filename, file_specs, {"format": "pt"}) as writer:
                loaded = []
                for name in writer.order:
                    ranges = source.byte_ranges(name, out_dtype)
                    if ranges is None:
                        loaded.append(name)
                        continue
                    writer.copy_from(name, ranges, source.observe)
                    progress.update(sum(length for _, _, length in ranges))
                for batch in _batches(loaded, file_specs):
                    for name, tensor in source.load(batch, out_dtype).items():
                        writer.write(name, tensor)
                        progress.update(tensor.numel() * tensor.element_size())
            files.append(filename)
        if split.is_sharded:
            index = {
                "metadata": {
                    **split.metadata, "total_size": total
                },
                "weight_map": split.tensor_to_filename
            }
            (tmp / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
            files.append("model.safetensors.index.json")
        _write_config(hf_dir, tmp, config, out_dtype)
        files.append("config.json")
        files += _carry_files(hf_dir, info, tmp)
        source.check()  # the checkpoint's own checksums, before anything trusts its bytes
        if cfg.verify:
            _verify(tmp, hf_dir, config, source, split.filename_to_tensors, out_dtype)
    return MergeResult(target, info.format, len(plan), total, tuple(files), cfg.verify)
