"""``model-merger``: inspect checkpoints before merging them."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from model_merger.formats import CheckpointError, detect_checkpoint
from trainyard_core.cli import main_guard
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
    return parser


@main_guard
def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``model-merger`` command."""
    args = build_parser().parse_args(argv)
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
