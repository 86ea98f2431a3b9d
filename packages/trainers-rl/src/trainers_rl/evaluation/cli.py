"""``trainers-rl evaluate``: drive a saved DrivingVLA (and baselines) closed-loop, report.

Writes ``eval.json`` (every policy's summary and per-episode records) and one episode video to
the output directory, and prints the summary table.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from rich.console import Console

from carla_env import SimulatorConfig
from driving_vla import DrivingVLA
from trainers_rl.evaluation.closed_loop import (
    MODEL_MODES,
    BatchPolicy,
    autopilot_policy,
    evaluate_policies,
    model_policy,
    random_policy,
)
from trainers_rl.evaluation.controller import ControllerConfig
from trainyard_core.config import ConfigError
from trainyard_core.table import print_table

__all__ = ["EvaluateConfig", "load_model", "run_evaluate"]

log = logging.getLogger(__name__)

_VIDEO = ("gif", "mp4", "none")


@dataclasses.dataclass
class EvaluateConfig:
    """Which model, how it drives, on how many held-out episodes of which simulator."""

    model: str = dataclasses.field(
        default="",
        metadata={"help": "DrivingVLA directory from save_pretrained ('' = baselines only)"})
    mode: str = dataclasses.field(
        default="controls",
        metadata={
            "help": "controls (control head), waypoints (waypoint head + controller) "
                    "or both"
        })
    episodes: int = dataclasses.field(default=100, metadata={"help": "episodes, one per env seed"})
    seed: int = dataclasses.field(
        default=1_000_000,
        metadata={"help": "first env seed (training uses seeds below 1,000,000)"})
    output_dir: str = dataclasses.field(default="runs/eval",
                                        metadata={
                                            "flags": ("--output-dir",),
                                            "help": "where eval.json and the video go"
                                        })
    video: str = dataclasses.field(
        default="gif", metadata={"help": "episode video of the first policy: gif, mp4 or none"})
    baselines: bool = dataclasses.field(
        default=True, metadata={"help": "also evaluate the autopilot and a random policy"})
    controller: ControllerConfig = dataclasses.field(default_factory=ControllerConfig)
    sim: SimulatorConfig = dataclasses.field(default_factory=SimulatorConfig)

    def __post_init__(self) -> None:
        if self.mode not in (*MODEL_MODES, "both"):
            raise ValueError(f"mode must be controls, waypoints or both, got {self.mode!r}")
        if self.episodes < 1:
            raise ValueError(f"episodes must be >= 1, got {self.episodes}")
        if self.video not in _VIDEO:
            raise ValueError(f"video must be gif, mp4 or none, got {self.video!r}")

    @property
    def modes(self) -> list[str]:
        return list(MODEL_MODES) if self.mode == "both" else [self.mode]


def load_model(path: str | Path, sim: SimulatorConfig) -> DrivingVLA:
    """Load a DrivingVLA and check that ``sim`` gives it the observations it reads."""
    path = Path(path)
    if not (path / "config.json").is_file():
        what = "has no config.json" if path.is_dir() else "does not exist"
        raise FileNotFoundError(f"model directory {str(path)!r} {what}; expected a directory "
                                "written by DrivingVLA.save_pretrained (config.json + weights)")
    try:
        model = DrivingVLA.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load a DrivingVLA from {str(path)!r}: {exc}") from exc
    keys = list(model.config.observation_keys)
    missing = [k for k in keys if k not in sim.observation_keys]
    if missing:
        raise ConfigError(f"the model reads observation keys {keys} but sim.observation_keys is "
                          f"{list(sim.observation_keys)} (missing {missing}); set e.g. "
                          f"sim.observation_keys=[{','.join(keys)}]")
    size = model.config.image_size
    if "camera" in keys and (sim.image_height, sim.image_width) != (size, size):
        raise ConfigError(f"the model reads {size}x{size} camera images but the simulator renders "
                          f"{sim.image_height}x{sim.image_width}; set sim.image_height and "
                          f"sim.image_width to {size}")
    return model


def run_evaluate(cfg: EvaluateConfig) -> list[dict[str, Any]]:
    """The whole ``evaluate`` command; returns the table rows it prints."""
    if cfg.sim.backend != "embedded":
        raise ConfigError(f"closed-loop evaluation in this command runs on the embedded backend "
                          f"only, got sim.backend={cfg.sim.backend!r}")
    if not cfg.model and not cfg.baselines:
        raise ConfigError("nothing to evaluate: give --model or keep --baselines")
    policies: dict[str, BatchPolicy] = {}
    if cfg.model:
        model = load_model(cfg.model, cfg.sim)
        for mode in cfg.modes:
            policies[f"model-{mode}"] = model_policy(model, mode, cfg.controller)
    if cfg.baselines:
        policies["autopilot"] = autopilot_policy()
        policies["random"] = random_policy(cfg.seed)
    video = None if cfg.video == "none" else next(iter(policies))
    out = Path(cfg.output_dir)
    rows = evaluate_policies(cfg.sim,
                             policies,
                             episodes=cfg.episodes,
                             seed=cfg.seed,
                             out_dir=out,
                             video_policy=video,
                             video_format="gif" if video is None else cfg.video)
    last = cfg.seed + cfg.episodes - 1
    console = Console()
    if not console.is_terminal:
        console = Console(width=200)  # logs: room for every column unfolded
    print_table(
        f"closed loop, {cfg.sim.scenario}: {cfg.episodes} episodes (env seeds {cfg.seed}..{last})",
        rows, console)
    print(f"report: {out / 'eval.json'}")
    if video is not None:
        log.info("video (%s): %s", video, out / f"episode.{cfg.video}")
    return rows
