"""Merge a sharded training checkpoint into a Hugging Face model directory.

The output is written shard by shard: the size of every merged tensor is known from the
checkpoint's metadata before any data is read, so the output shards are planned first, then
each one is filled (one tensor's pieces joined at a time), saved with ``safetensors`` and
dropped. Per-rank files are opened with ``mmap=True``, so only the pieces being joined are read
into memory. Everything goes to a temporary directory beside the target that is renamed into
place only when complete.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import torch
from huggingface_hub import split_torch_state_dict_into_shards
from safetensors.torch import save_file

from model_merger.formats import CheckpointError, CheckpointInfo, detect_checkpoint
from trainyard_core.io import atomic_directory

__all__ = ["BACKENDS", "DTYPES", "MergeConfig", "MergeResult", "merge", "parse_size"]

BACKENDS = ("auto", "fsdp", "dcp")
DTYPES: dict[str, torch.dtype | None] = {
    "auto": None,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
    "fp32": torch.float32,
}
_WEIGHT_FILE = re.compile(r"(\.safetensors|\.bin|\.pt|\.pth|\.safetensors\.index\.json|"
                          r"\.bin\.index\.json)$")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*$", re.IGNORECASE)


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
            "help": "checkpoint directory (verl's global_step_N/actor, or a DCP directory)",
            "flags": ("--local_dir",)
        })
    target_dir: str = dataclasses.field(
        metadata={
            "help": "where the Hugging Face model directory is written",
            "flags": ("--target_dir", "--save-dir")
        })
    backend: str = dataclasses.field(default="auto",
                                     metadata={"help": "checkpoint layout: auto, fsdp or dcp"})
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
            "help": "before publishing, load the result with transformers and compare every "
                    "tensor with the checkpoint (holds the whole model in memory once)"
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


class _Source(Protocol):

    def plan(self) -> dict[str, tuple[torch.Size, torch.dtype]]:
        ...

    def load(self, names: list[str]) -> dict[str, torch.Tensor]:
        ...


@contextmanager
def _quiet_device_mesh() -> Iterator[None]:
    # Unpickling a DTensor without a process group logs a warning about torch.compile.
    logger = logging.getLogger("torch.distributed.device_mesh")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _shard_sizes(length: int, world: int) -> list[int]:
    """The dim-0 piece each rank holds (``torch.chunk`` semantics, as FSDP shards)."""
    chunk = math.ceil(length / world) if length else 0
    return [max(0, min(chunk, length - rank * chunk)) for rank in range(world)]


class _FsdpSource:
    """verl's per-rank ``model_world_size_{W}_rank_{r}.pt`` files."""

    def __init__(self, info: CheckpointInfo) -> None:
        self.files = info.files
        self.world = info.world_size
        self._check_fsdp_config(info.path)
        self.states: list[dict[str, Any]] = []
        for file in self.files:
            try:
                with _quiet_device_mesh():
                    state = torch.load(file, map_location="cpu", mmap=True, weights_only=False)
            except Exception as exc:
                raise CheckpointError(f"{file}: cannot be read, truncated or corrupt "
                                      f"({type(exc).__name__}: {exc})") from exc
            if not isinstance(state, dict):
                raise CheckpointError(f"{file}: holds a {type(state).__name__}, "
                                      "not a model state dict")
            self.states.append(state)
        names = list(self.states[0])
        for file, state in zip(self.files[1:], self.states[1:], strict=True):
            if set(state) != set(names):
                diff = sorted(set(state) ^ set(names))[:3]
                raise CheckpointError(f"{file}: holds different tensor names than "
                                      f"{self.files[0].name} (e.g. {', '.join(diff)})")

    def _check_fsdp_config(self, path: Path) -> None:
        config = path / "fsdp_config.json"
        if not config.is_file():
            return
        try:
            world = json.loads(config.read_text())["world_size"]
        except (ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{config}: unreadable ({exc})") from exc
        if world != self.world:
            raise CheckpointError(f"{config}: world_size {world} but the rank files are for "
                                  f"world size {self.world}")

    def _pieces(self, name: str) -> list[Any]:
        return [state[name] for state in self.states]

    def plan(self) -> dict[str, tuple[torch.Size, torch.dtype]]:
        from torch.distributed.tensor import DTensor, Replicate, Shard

        plan: dict[str, tuple[torch.Size, torch.dtype]] = {}
        for name in self.states[0]:
            pieces = self._pieces(name)
            if not all(isinstance(p, torch.Tensor) for p in pieces):
                continue  # non-tensor extras (e.g. _extra_state) are not model weights
            if all(isinstance(p, DTensor) for p in pieces):
                first = pieces[0]
                if first.device_mesh.ndim != 1 or first.device_mesh.size() != self.world:
                    raise CheckpointError(f"{self.files[0]}: tensor {name} is laid out on a "
                                          f"{tuple(first.device_mesh.shape)} mesh; only a 1-D "
                                          f"mesh of the {self.world} ranks is supported")
                placement = first.placements[0]
                for file, piece in zip(self.files, pieces, strict=True):
                    if piece.shape != first.shape or piece.placements != first.placements:
                        raise CheckpointError(f"{file}: tensor {name} is {tuple(piece.shape)} "
                                              f"{piece.placements} but rank 0 has it as "
                                              f"{tuple(first.shape)} {first.placements}")
                if isinstance(placement, Shard):
                    dim = placement.dim
                    expected = _shard_sizes(first.shape[dim], self.world)
                    for file, piece, size in zip(self.files, pieces, expected, strict=True):
                        local = piece.to_local().shape
                        want = (*first.shape[:dim], size, *first.shape[dim + 1:])
                        if tuple(local) != tuple(want):
                            raise CheckpointError(
                                f"{file}: shard of tensor {name} is {tuple(local)}, but the "
                                f"shards of a {tuple(first.shape)} tensor split on dim {dim} "
                                f"over {self.world} ranks must be {tuple(want)} here: they do "
                                "not tile its shape")
                elif not isinstance(placement, Replicate):
                    raise CheckpointError(f"{self.files[0]}: tensor {name} has placement "
                                          f"{placement}, which cannot be merged")
                plan[name] = (first.shape, first.dtype)
            elif any(isinstance(p, DTensor) for p in pieces):
                raise CheckpointError(f"{self.files[0]}: tensor {name} is a DTensor on some "
                                      "ranks and a plain tensor on others")
            else:
                first = pieces[0]
                for file, piece in zip(self.files, pieces, strict=True):
                    if piece.shape != first.shape or piece.dtype != first.dtype:
                        raise CheckpointError(
                            f"{file}: plain tensor {name} is {tuple(piece.shape)} {piece.dtype} "
                            f"but {tuple(first.shape)} {first.dtype} on rank 0; plain tensors "
                            "must be replicated (the same on every rank)")
                plan[name] = (first.shape, first.dtype)
        return plan

    def load(self, names: list[str]) -> dict[str, torch.Tensor]:
        from torch.distributed.tensor import DTensor, Shard

        out: dict[str, torch.Tensor] = {}
        for name in names:
            pieces = self._pieces(name)
            first = pieces[0]
            if isinstance(first, DTensor):
                placement = first.placements[0]
                if isinstance(placement, Shard):
                    out[name] = torch.cat([p.to_local() for p in pieces], dim=placement.dim)
                else:  # replicated: one copy, not W copies joined (verl-project/verl#7610)
                    out[name] = first.to_local().clone()
            else:
                for file, piece in zip(self.files[1:], pieces[1:], strict=True):
                    if not torch.equal(piece, first):
                        raise CheckpointError(f"{file}: plain tensor {name} differs from rank "
                                              "0's copy; plain tensors must be replicated")
                out[name] = first.clone()
        return out


class _DcpSource:
    """A ``torch.distributed.checkpoint`` directory, read without a process group."""

    def __init__(self, info: CheckpointInfo) -> None:
        from torch.distributed.checkpoint import FileSystemReader
        from torch.distributed.checkpoint.metadata import TensorStorageMetadata

        self.path = info.path
        metadata_file = self.path / ".metadata"
        try:
            metadata = FileSystemReader(str(self.path)).read_metadata()
        except Exception as exc:
            raise CheckpointError(f"{metadata_file}: cannot be read, truncated or corrupt "
                                  f"({type(exc).__name__}: {exc})") from exc
        needed: dict[str, int] = {}
        for item in (metadata.storage_data or {}).values():
            end = int(item.offset) + int(item.length)
            needed[item.relative_path] = max(needed.get(item.relative_path, 0), end)
        for relative, end in sorted(needed.items()):
            file = self.path / relative
            if not file.is_file():
                raise CheckpointError(f"{file}: missing (named in {metadata_file.name})")
            size = file.stat().st_size
            if size < end:
                raise CheckpointError(f"{file}: truncated: {size} bytes, but {metadata_file.name}"
                                      f" places data up to byte {end}")
        self._plan: dict[str, tuple[torch.Size, torch.dtype]] = {}
        for name, meta in metadata.state_dict_metadata.items():
            if not isinstance(meta, TensorStorageMetadata):
                continue  # bytes entries are not weights
            shape = meta.size
            covered = 0
            for chunk in meta.chunks:
                inside = all(o >= 0 and o + s <= d
                             for o, s, d in zip(chunk.offsets, chunk.sizes, shape, strict=True))
                if not inside:
                    raise CheckpointError(f"{metadata_file}: a chunk of tensor {name} at "
                                          f"{tuple(chunk.offsets)} size {tuple(chunk.sizes)} "
                                          f"lies outside its shape {tuple(shape)}")
                covered += math.prod(chunk.sizes)
            if covered != math.prod(shape):
                raise CheckpointError(f"{metadata_file}: the chunks of tensor {name} cover "
                                      f"{covered} of its {math.prod(shape)} elements: they do "
                                      f"not tile its shape {tuple(shape)}")
            self._plan[name] = (shape, meta.properties.dtype)

    def plan(self) -> dict[str, tuple[torch.Size, torch.dtype]]:
        return dict(self._plan)

    def load(self, names: list[str]) -> dict[str, torch.Tensor]:
        import warnings

        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint import FileSystemReader

        state: dict[str, Any] = {
            n: torch.empty(self._plan[n][0], dtype=self._plan[n][1]) for n in names
        }
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="torch.distributed is disabled")
                dcp.load(state, storage_reader=FileSystemReader(str(self.path)), no_dist=True)
        except Exception as exc:
            raise CheckpointError(f"{self.path}: reading the *.distcp files failed, one is "
                                  f"corrupt ({type(exc).__name__}: {exc})") from exc
        return state


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


def _tied_duplicate(config: dict[str, Any], config_file: Path, source: _Source,
                    plan: dict[str, tuple[torch.Size, torch.dtype]]) -> str | None:
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


def _verify(tmp: Path, config: dict[str, Any], source: _Source, split_files: dict[str, list[str]],
            tied: str | None, out_dtype: torch.dtype | None) -> None:
    """Load the written model with transformers and compare every tensor with the sources."""
    import transformers

    architectures = config.get("architectures") or []
    cls = getattr(transformers, architectures[0], None) if architectures else None
    if cls is None:
        cls = transformers.AutoModelForCausalLM
    model = cls.from_pretrained(tmp, dtype="auto")
    state = model.state_dict()
    written = {name for names in split_files.values() for name in names}
    expected = written | ({tied} if tied else set())
    if set(state) != expected:
        missing = sorted(expected - set(state))[:3]
        extra = sorted(set(state) - expected)[:3]
        raise CheckpointError(f"{tmp}: the model transformers loads does not match the "
                              f"checkpoint (missing {missing}, unexpected {extra})")
    for names in split_files.values():
        wanted = list(names) + ([tied] if tied and "model.embed_tokens.weight" in names else [])
        for name, tensor in source.load(wanted).items():
            if out_dtype is not None:
                tensor = tensor.to(out_dtype)
            if state[name].dtype != tensor.dtype or not torch.equal(state[name], tensor):
                raise CheckpointError(f"{tmp}: verification failed: tensor {name} as loaded "
                                      "by transformers differs from the checkpoint")


def merge(cfg: MergeConfig) -> MergeResult:
    """Merge ``cfg.local_dir`` into a Hugging Face model directory at ``cfg.target_dir``."""
    target = Path(cfg.target_dir)
    if target.exists() and not cfg.overwrite and (not target.is_dir() or any(target.iterdir())):
        raise CheckpointError(f"{target}: already exists (pass --overwrite to replace it)")
    info = detect_checkpoint(cfg.local_dir, require_hf_config=cfg.hf_config_dir is None)
    if info.format == "lora":
        raise CheckpointError(f"{info.path}: a LoRA adapter, not a sharded model checkpoint")
    if cfg.backend != "auto" and cfg.backend != info.format:
        raise CheckpointError(f"{info.path}: --backend {cfg.backend} but the directory holds "
                              f"a {info.format} checkpoint")
    hf_dir = _hf_config_dir(cfg, info)
    for inside in (info.path, hf_dir):
        if inside.resolve().is_relative_to(target.resolve()):
            raise CheckpointError(f"{target}: holds the input {inside}; writing the merged "
                                  "model there would replace it (choose another --target-dir)")
    config = _read_config(hf_dir / "config.json")
    source: _Source = _FsdpSource(info) if info.format == "fsdp" else _DcpSource(info)
    plan = source.plan()
    if not plan:
        raise CheckpointError(f"{info.path}: the checkpoint holds no tensors")
    tied = _tied_duplicate(config, hf_dir / "config.json", source, plan)
    if tied is not None:
        del plan[tied]
    out_dtype = DTYPES[cfg.dtype]
    meta = {
        name: torch.empty(shape, dtype=out_dtype or dtype, device="meta")
        for name, (shape, dtype) in plan.items()
    }
    split = split_torch_state_dict_into_shards(meta,
                                               filename_pattern="model{suffix}.safetensors",
                                               max_shard_size=parse_size(cfg.max_shard_size))
    total = sum(t.numel() * t.element_size() for t in meta.values())
    del meta
    files = []
    with atomic_directory(target, overwrite=target.exists()) as tmp:
        for filename, names in split.filename_to_tensors.items():
            tensors = source.load(list(names))
            if out_dtype is not None:
                tensors = {n: t.to(out_dtype) for n, t in tensors.items()}
            save_file({
                n: t.contiguous() for n, t in tensors.items()
            },
                      str(tmp / filename),
                      metadata={"format": "pt"})
            del tensors
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
        for item in sorted(hf_dir.iterdir()):
            if item.is_file() and item.name != "config.json" and not _WEIGHT_FILE.search(item.name):
                shutil.copy2(item, tmp / item.name)
                files.append(item.name)
        if cfg.verify:
            _verify(tmp, config, source, split.filename_to_tensors, tied, out_dtype)
    return MergeResult(target, info.format, len(plan), total, tuple(files), cfg.verify)
