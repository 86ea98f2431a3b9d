"""Which kind of checkpoint a directory holds, and whether it is complete.

Three layouts are recognised:

- ``fsdp``: per-rank files as verl writes them, ``model_world_size_{W}_rank_{r}.pt``, with
  the Hugging Face config and tokenizer in ``huggingface/`` beside them;
- ``dcp``: a ``torch.distributed.checkpoint`` directory (``.metadata`` plus ``*.distcp``);
- ``lora``: a peft adapter (``adapter_config.json`` plus its weights).
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

__all__ = ["FORMATS", "CheckpointError", "CheckpointInfo", "detect_checkpoint"]

FORMATS = ("fsdp", "dcp", "lora")
_RANK_FILE = re.compile(r"^model_world_size_(\d+)_rank_(\d+)\.pt$")
_ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")


class CheckpointError(ValueError):
    """A checkpoint directory that cannot be merged, with the file and the problem."""


@dataclasses.dataclass(frozen=True)
class CheckpointInfo:
    """A recognised, complete checkpoint."""

    format: str
    path: Path
    files: tuple[Path, ...]
    world_size: int = 1
    hf_config_dir: Path | None = None


def _fsdp(path: Path, rank_files: list[Path], require_hf_config: bool) -> CheckpointInfo:
    found: dict[int, dict[int, Path]] = {}
    for file in rank_files:
        match = _RANK_FILE.match(file.name)
        assert match is not None
        world, rank = int(match.group(1)), int(match.group(2))
        found.setdefault(world, {})[rank] = file
    if len(found) > 1:
        sizes = ", ".join(f"{w} ({len(r)} files, e.g. {min(r.items())[1].name})"
                          for w, r in sorted(found.items()))
        raise CheckpointError(f"{path}: rank files disagree on the world size: {sizes}")
    (world, ranks), = found.items()
    missing = [r for r in range(world) if r not in ranks]
    if missing:
        names = ", ".join(f"model_world_size_{world}_rank_{r}.pt" for r in missing)
        raise CheckpointError(f"{path}: missing rank file(s) {names}")
    extra = sorted(r for r in ranks if r >= world)
    if extra:
        raise CheckpointError(f"{path}: rank(s) {extra} out of range for world size {world}")
    hf_dir: Path | None = path / "huggingface"
    if not (path / "huggingface" / "config.json").is_file():
        hf_dir = None
    if hf_dir is None and require_hf_config:
        raise CheckpointError(f"{path}: no huggingface/config.json beside the rank files "
                              "(verl saves the model config and tokenizer there)")
    return CheckpointInfo("fsdp", path, tuple(ranks[r] for r in range(world)), world, hf_dir)


def detect_checkpoint(path: str | Path, require_hf_config: bool = True) -> CheckpointInfo:
    """Recognise the checkpoint in ``path`` or raise ``CheckpointError`` saying what is wrong.

    ``require_hf_config=False`` accepts rank files without ``huggingface/config.json`` beside
    them (for a caller that takes the config from elsewhere)."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path}: not a directory")
    rank_files = sorted(p for p in path.iterdir() if _RANK_FILE.match(p.name))
    if rank_files:
        return _fsdp(path, rank_files, require_hf_config)
    if (path / ".metadata").is_file():
        shards = tuple(sorted(path.glob("*.distcp")))
        if not shards:
            raise CheckpointError(f"{path}: DCP .metadata present but no *.distcp files")
        hf = path / "huggingface"
        return CheckpointInfo("dcp",
                              path,
                              shards,
                              hf_config_dir=hf if (hf / "config.json").is_file() else None)
    if (path / "adapter_config.json").is_file():
        weights = [path / name for name in _ADAPTER_WEIGHTS if (path / name).is_file()]
        if not weights:
            raise CheckpointError(f"{path}: adapter_config.json present but no "
                                  f"{' or '.join(_ADAPTER_WEIGHTS)}")
        return CheckpointInfo("lora", path, (path / "adapter_config.json", weights[0]))
    raise CheckpointError(f"{path}: no checkpoint found (expected model_world_size_W_rank_R.pt "
                          "files, a DCP .metadata file, or a peft adapter_config.json)")
