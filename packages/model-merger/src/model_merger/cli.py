"""``model-merger``: inspect sharded checkpoints and merge them into Hugging Face models."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from model_merger.formats import CheckpointError, detect_checkpoint
from model_merger.merge import MergeConfig, merge
from trainyard_core.cli import add_config_arguments, config_from_args, main_guard, parse_args
from trainyard_core.config import ConfigError
from trainyard_core.table import print_table


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="model-merger",
                                     description="Checkpoints to Hugging Face models.")
    commands = parser.add_subparsers(dest="command", required=True)
    inspect = commands.add_parser("inspect",
                                  help="recognise a checkpoint directory and check it is complete",
                                  description="Detect the layout of LOCAL_DIR (verl FSDP rank "
                                  "files, torch DCP, or a peft LoRA adapter) and check that every "
                                  "file a merge needs is there.")
    inspect.add_argument("local_dir", type=Path, help="checkpoint directory")
    merge_parser = commands.add_parser(
        "merge",
        help="merge a sharded checkpoint into a Hugging Face model directory",
        description="Join verl's per-rank FSDP files or a torch DCP directory into "
        "safetensors shards plus the config and tokenizer files, written to a temporary "
        "directory beside TARGET_DIR and renamed into place only when complete.")
    add_config_arguments(merge_parser, MergeConfig)
    return parser


def _merge(args: argparse.Namespace) -> int:
    cfg = config_from_args(MergeConfig, args)
    try:
        result = merge(cfg)
    except CheckpointError as exc:
        raise ConfigError(str(exc)) from exc
    print_table(f"{result.target}", [{
        "format": result.format,
        "tensors": result.tensors,
        "MiB": result.total_bytes / 2**20,
        "files": len(result.files),
        "verified": "yes" if result.verified else "no",
    }])
    return 0


@main_guard
def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``model-merger`` command."""
    args = parse_args(build_parser(), argv)
    if args.command == "merge":
        return _merge(args)
    try:
        info = detect_checkpoint(args.local_dir)
    except CheckpointError as exc:
        raise ConfigError(str(exc)) from exc
    size = sum(f.stat().st_size for f in info.files)
    print_table(f"{info.path}", [{
        "format": info.format,
        "world_size": info.world_size,
        "files": len(info.files),
        "MiB": size / 2**20,
        "hf_config": str(info.hf_config_dir or "-"),
    }])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
