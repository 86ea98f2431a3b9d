"""``vla-finetune``: work with robot-arm TFRecord logs."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence
from pathlib import Path

from trainyard_core.cli import add_config_arguments, config_from_args, main_guard, parse_args
from trainyard_core.config import ConfigError
from trainyard_core.table import print_table
from vla_finetune.episodes import find_episodes, summarize_episode
from vla_finetune.tfrecord import TFRecordError


@dataclasses.dataclass
class DataConfig:
    """Where the logs are."""

    data_root: str = dataclasses.field(
        default="/workspace/data/tfrecord_logs",
        metadata={"help": "directory of <episode>/"
                          "episode_data.tfrecord folders"})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vla-finetune", description="VLA fine-tuning tools.")
    commands = parser.add_subparsers(dest="command", required=True)
    inspect = commands.add_parser("inspect",
                                  help="read every episode under --data-root and summarize it",
                                  description="Read every episode's TFRecord file (verifying "
                                  "checksums) and print steps, instruction and cameras.")
    add_config_arguments(inspect, DataConfig)
    return parser


@main_guard
def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``vla-finetune`` command."""
    args = parse_args(build_parser(), argv)
    cfg = config_from_args(DataConfig, args)
    rows = []
    for path in find_episodes(Path(cfg.data_root)):
        try:
            summary = summarize_episode(path)
        except (TFRecordError, ValueError) as exc:
            raise ConfigError(f"unreadable episode: {exc}") from exc
        rows.append({
            "episode": summary.name,
            "steps": summary.steps,
            "instruction": summary.instruction,
            "cameras": ",".join(summary.cameras),
            "proprio": summary.proprio_dim,
            "action": summary.action_dim,
        })
    print_table(f"{len(rows)} episodes in {cfg.data_root}", rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
