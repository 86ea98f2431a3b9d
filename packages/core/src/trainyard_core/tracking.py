"""Run directories and experiment tracking: TensorBoard by default, Weights & Biases opt-in.

TensorBoard event files are the one logging path; W&B, when enabled, mirrors them
(``sync_tensorboard``) instead of being a second set of logging calls in every trainer.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
from pathlib import Path
from typing import Any

__all__ = ["TrackingConfig", "make_run_dir", "start_wandb"]


@dataclasses.dataclass
class TrackingConfig:
    """Where a run logs to."""

    tensorboard: bool = dataclasses.field(default=True,
                                          metadata={"help": "write TensorBoard event files"})
    use_wandb: bool = dataclasses.field(default=False,
                                        metadata={
                                            "help": "mirror TensorBoard logs to W&B",
                                            "flags": ("--use-wandb",)
                                        })
    wandb_project: str | None = dataclasses.field(
        default=None,
        metadata={
            "help": "W&B project (else $WANDB_PROJECT, else 'trainyard')",
            "flags": ("--wandb-project",)
        })
    wandb_entity: str | None = dataclasses.field(default=None,
                                                 metadata={"flags": ("--wandb-entity",)})


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def make_run_dir(root: str | Path, name: str, timestamp: bool = True) -> Path:
    """Create ``root/name[-YYYYmmdd-HHMMSS]`` and return it."""
    if not _NAME.match(name):
        raise ValueError(f"run name {name!r} must be letters, digits, '.', '_' or '-'")
    if timestamp:
        name = f"{name}-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    path = Path(root) / name
    path.mkdir(parents=True, exist_ok=not timestamp)
    return path


def start_wandb(cfg: TrackingConfig, run_dir: Path, config: dict[str, Any]) -> Any | None:
    """Start a W&B run that syncs this run's TensorBoard logs, if ``use_wandb`` is set."""
    if not cfg.use_wandb:
        return None
    try:
        import wandb
    except ImportError as exc:
        raise RuntimeError("use_wandb is set but wandb is not installed: "
                           "pip install 'trainyard-core[wandb]'") from exc
    return wandb.init(project=cfg.wandb_project or os.environ.get("WANDB_PROJECT", "trainyard"),
                      entity=cfg.wandb_entity or os.environ.get("WANDB_ENTITY"),
                      dir=str(run_dir),
                      config=config,
                      sync_tensorboard=True,
                      name=run_dir.name)
