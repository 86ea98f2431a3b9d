"""Waypoint behaviour cloning of DrivingVLA on recorded demonstrations.

Runs as one process or under ``torchrun`` (DDP: gloo on CPU, NCCL on GPU) unchanged::

    python -m trainers_rl.imitation.bc --config configs/sft_waypoint_bc.yaml
    torchrun --nproc_per_node=2 -m trainers_rl.imitation.bc --config configs/sft_waypoint_bc.yaml

Every rank draws the same shuffled global batch and takes its share of it, so with N ranks
each step averages the gradient over the same samples a single process would see: the losses
match a single-process run up to floating-point summation order.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from driving_vla import DrivingVLA, DrivingVLAConfig
from trainers_rl.imitation.demos import load_demos
from trainyard_core.cli import (
    add_config_arguments,
    config_from_args,
    main_guard,
    parse_args,
    progress_enabled,
)
from trainyard_core.io import atomic_directory, atomic_write_text

__all__ = ["BCConfig", "BCTrainingConfig", "train_bc"]


@dataclasses.dataclass
class BCTrainingConfig:
    """How to clone: what the main job's ``bc`` section holds. Where the data comes from,
    where the model goes and how its control head is read are the job's to decide (its
    demonstrations, its run directory, its RL algorithm), so they are not settings there."""

    epochs: int = 5
    batch_size: int = dataclasses.field(default=256,
                                        metadata={"help": "global batch, split across ranks"})
    learning_rate: float = 1e-3
    waypoint_weight: float = 1.0
    control_weight: float = 1.0
    hidden_size: int = 128
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "hidden_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")


@dataclasses.dataclass
class BCConfig(BCTrainingConfig):
    """Behaviour cloning as a command of its own (the names of seed 000's
    sft_waypoint_bc.yaml): the training settings, the dataset and where the model goes."""

    data_dir: str = dataclasses.field(default="data/demos",
                                      metadata={"help": "dataset from record-demos"})
    output_dir: str = dataclasses.field(default="runs/bc",
                                        metadata={"help": "where the DrivingVLA is saved"})
    control_activation: str = dataclasses.field(
        default="clip",
        metadata={"help": "clip (for PPO) or tanh (for SAC): how the control head is read"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.control_activation not in ("clip", "tanh"):
            raise ValueError(f"control_activation must be clip or tanh, got "
                             f"{self.control_activation!r}")


def _distributed() -> tuple[int, int, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    rank = dist.get_rank() if world > 1 else 0
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return rank, world, torch.device("cuda", local)
    return rank, world, torch.device("cpu")


def train_bc(cfg: BCConfig) -> dict[str, Any]:
    """Train, save the model (rank 0) and return the per-epoch mean losses."""
    rank, world, device = _distributed()
    if cfg.batch_size % world:
        raise ValueError(f"batch_size {cfg.batch_size} must divide by the {world} ranks")
    arrays, meta = load_demos(cfg.data_dir)
    keys = list(meta["observation_keys"])
    torch.manual_seed(cfg.seed)
    model_cfg = DrivingVLAConfig(observation_keys=keys,
                                 trajectory_length=int(meta["demo"]["trajectory_length"]),
                                 hidden_size=cfg.hidden_size,
                                 control_activation=cfg.control_activation)
    model = DrivingVLA(model_cfg)
    torch.nn.Module.to(model, device)
    # Cloning trains the encoders, waypoint and control heads; value and exploration noise
    # are RL's to learn (and DDP requires every trained parameter to get a gradient).
    model.value_head.requires_grad_(False)
    model.log_std.requires_grad_(False)
    net: torch.nn.Module = DistributedDataParallel(model) if world > 1 else model
    optimizer = torch.optim.Adam([p for p in net.parameters() if p.requires_grad],
                                 lr=cfg.learning_rate)
    tensors = {k: torch.as_tensor(v) for k, v in arrays.items()}
    samples = len(tensors["actions"])
    steps = samples // cfg.batch_size
    if steps == 0:
        raise ValueError(f"{cfg.data_dir} holds {samples} samples, fewer than one batch of "
                         f"{cfg.batch_size}")
    losses = []
    bar = tqdm(range(cfg.epochs),
               desc="behaviour cloning",
               unit="epoch",
               disable=rank != 0 or not progress_enabled())
    for epoch in bar:
        order = np.random.default_rng(cfg.seed + epoch).permutation(samples)
        total = 0.0
        for step in range(steps):
            batch = order[step * cfg.batch_size:(step + 1) * cfg.batch_size][rank::world]
            inputs = {k: tensors[k][batch].to(device) for k in keys}
            out = net(**inputs)
            waypoint_loss = torch.mean((out.waypoints - tensors["waypoints"][batch].to(device))**2)
            # clip: regress the Gaussian mean (clipping has no gradient outside the box);
            # tanh: the squashed controls themselves.
            pred = out.action_mean if cfg.control_activation == "clip" else out.controls
            control_loss = torch.mean((pred - tensors["actions"][batch].to(device))**2)
            loss = cfg.waypoint_weight * waypoint_loss + cfg.control_weight * control_loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach())
        mean = torch.tensor(total / steps, device=device)
        if world > 1:
            dist.all_reduce(mean)
            mean /= world
        losses.append(float(mean))
        bar.set_postfix(loss=f"{losses[-1]:.4g}")
    report = {"losses": losses, "samples": samples, "world_size": world}
    if rank == 0:
        out_dir = Path(cfg.output_dir)
        # transformers writes config.json before the weights: written in place, a run killed
        # in between leaves a directory that looks like a model. The report comes last.
        with atomic_directory(out_dir / "model", overwrite=True) as tmp:
            model.save_pretrained(tmp)
        atomic_write_text(out_dir / "bc_report.json", json.dumps(report, indent=2) + "\n")
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return report


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m trainers_rl.imitation.bc",
                                     description="Waypoint behaviour cloning of DrivingVLA.")
    add_config_arguments(parser, BCConfig)
    return parser


@main_guard
def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m trainers_rl.imitation.bc`` (also under torchrun)."""
    cfg = config_from_args(BCConfig, parse_args(build_parser(), argv))
    report = train_bc(cfg)
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
