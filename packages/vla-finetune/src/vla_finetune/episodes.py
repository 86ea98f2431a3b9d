"""CRANE-X7 logger episodes: ``<data_root>/<episode>/episode_data.tfrecord``, one Example a step."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from vla_finetune.example_proto import parse_example
from vla_finetune.tfrecord import read_records

__all__ = ["EpisodeSummary", "find_episodes", "summarize_episode"]

EPISODE_FILE = "episode_data.tfrecord"
_IMAGE_PREFIX = "observation/image_"


@dataclasses.dataclass(frozen=True)
class EpisodeSummary:
    """What one episode holds, read from every record (so every checksum is verified)."""

    name: str
    steps: int
    instruction: str
    cameras: tuple[str, ...]
    proprio_dim: int
    action_dim: int


def find_episodes(data_root: Path) -> list[Path]:
    """Episode files under ``data_root``, sorted; an error naming the root if there are none."""
    data_root = Path(data_root)
    if not data_root.is_dir():
        raise FileNotFoundError(f"data root {str(data_root)!r} is not a directory")
    files = sorted(data_root.glob(f"*/{EPISODE_FILE}"))
    if not files:
        raise FileNotFoundError(f"data root {str(data_root)!r} holds no "
                                f"<episode>/{EPISODE_FILE} files")
    return files


def summarize_episode(path: Path) -> EpisodeSummary:
    """Read an episode file whole and describe it."""
    steps = [parse_example(record) for record in read_records(path)]
    if not steps:
        raise ValueError(f"{path}: episode has no steps")
    first = steps[0]
    for key in ("observation/proprio", "action"):
        if key not in first:
            raise ValueError(f"{path}: step 0 lacks the feature {key!r}")
    instruction = first.get("task/language_instruction") or [b""]
    return EpisodeSummary(
        name=path.parent.name,
        steps=len(steps),
        instruction=instruction[0].decode("utf-8"),
        cameras=tuple(
            sorted(k.removeprefix(_IMAGE_PREFIX) for k in first if k.startswith(_IMAGE_PREFIX))),
        proprio_dim=int(np.asarray(first["observation/proprio"]).size),
        action_dim=int(np.asarray(first["action"]).size),
    )
