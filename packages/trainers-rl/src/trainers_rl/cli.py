"""``trainers-rl``: train, evaluate and report, one run directory per run."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from collections.abc import Sequence
from typing import Any

from carla_env import SimulatorConfig
from trainers_rl.evaluation.cli import EvaluateConfig, run_evaluate
from trainers_rl.evaluation.episodes import random_policy, run_episodes, summarize
from trainers_rl.evaluation.plots import plot_learning_curve
from trainers_rl.imitation.bc import BCConfig, train_bc
from trainers_rl.imitation.demos import DemoConfig, record_demos
from trainers_rl.pipeline import DrivingRunConfig, preflight, resolve_config, run_pipeline
from trainers_rl.preflight import check_tracking, check_writable, wandb_extra
from trainers_rl.rl.envs import require_registered
from trainers_rl.rl.ppo import PPOTrainer
from trainers_rl.run_config import PPORunConfig
from trainyard_core.cli import (
    add_config_arguments,
    config_from_args,
    config_sources,
    main_guard,
    parse_args,
)
from trainyard_core.config import save_config
from trainyard_core.io import atomic_write_text
from trainyard_core.table import print_table
from trainyard_core.tracking import make_run_dir, start_wandb

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trainers-rl", description="trainyard trainers.")
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser(
        "train",
        help="the main job: demos -> behaviour cloning -> RL -> evaluation -> export",
        description="Record autopilot demonstrations, clone them into DrivingVLA, fine-tune it "
        "with PPO or SAC, evaluate it in closed loop on held-out seeds beside the autopilot and "
        "a random policy, and export it to ONNX and TorchScript, all into one run directory "
        "(configs/train/driving.yaml is what `make train` runs). resume=RUN_DIR alone "
        "continues a run on its own config.yaml; settings given with it that would change the "
        "run are refused (name, output_dir, torch_threads and tracking.* may differ; "
        "rl.ppo/sac.total_timesteps may grow).")
    _add_check(
        train, "export (onnx, onnxscript, onnxruntime), the CARLA client for "
        "sim.backend carla, wandb and its key for tracking.use_wandb, the output directory "
        "and, with resume, that the config continues the run")
    add_config_arguments(train, DrivingRunConfig)
    ppo = commands.add_parser(
        "ppo",
        help="train a PPO policy, evaluate it beside a random policy",
        description="Train PPO (stable-baselines3) on a Gymnasium environment, evaluate it on "
        "held-out seeds beside a random policy, and write config.yaml, TensorBoard logs, "
        "model.zip, eval.json and learning_curve.png to one run directory.")
    _add_check(
        ppo, "the environment id, wandb and its key for tracking.use_wandb, and the "
        "output directory")
    add_config_arguments(ppo, PPORunConfig)
    demos = commands.add_parser(
        "record-demos",
        help="record autopilot demonstrations from the embedded simulator",
        description="Drive the embedded simulator's autopilot and save observations, actions "
        "and future waypoints as a dataset directory (meta.json + data.npz).")
    add_config_arguments(demos, RecordConfig)
    bc = commands.add_parser("bc",
                             help="waypoint behaviour cloning of DrivingVLA (torchrun-ready)",
                             description="Train DrivingVLA's waypoint and control heads on a "
                             "recorded dataset; same as python -m trainers_rl.imitation.bc.")
    add_config_arguments(bc, BCConfig)
    evaluate = commands.add_parser(
        "evaluate",
        help="closed-loop evaluation of a DrivingVLA beside the autopilot and random",
        description="Drive a saved DrivingVLA (control head, waypoint head + controller, or "
        "both) and baselines for one episode per held-out seed on the embedded simulator; "
        "write eval.json and an episode video, print driving metrics.")
    add_config_arguments(evaluate, EvaluateConfig)
    return parser


def _add_check(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--check",
                        action="store_true",
                        help=f"resolve the config, check what the run needs ({what}), print "
                        "the checks and exit 0 without running anything; exit 2 naming the "
                        "missing piece otherwise. Every run makes these checks first")


def _report_checks(checked: list[str]) -> None:
    for line in checked:
        print(f"ok  {line}")
    print("all checks passed; nothing was run (--check)")


def ppo_preflight(cfg: PPORunConfig) -> list[str]:
    """What ``trainers-rl ppo`` checks before any work (see ``trainers_rl.preflight``)."""
    require_registered(cfg.ppo.env_id)
    return [
        f"environment: {cfg.ppo.env_id} is registered",
        check_writable(cfg.output_dir, "output_dir"),
        check_tracking(cfg.tracking)
    ]


@dataclasses.dataclass
class RecordConfig:
    """Where to write demonstrations, how many, from which simulator settings."""

    output: str = dataclasses.field(default="data/demos",
                                    metadata={"help": "dataset directory to create"})
    demo: DemoConfig = dataclasses.field(default_factory=DemoConfig)
    sim: SimulatorConfig = dataclasses.field(default_factory=SimulatorConfig)


def run_ppo(cfg: PPORunConfig) -> dict[str, Any]:
    """The whole ``ppo`` command; returns the report it writes as eval.json."""
    ppo_preflight(cfg)
    run_dir = make_run_dir(cfg.output_dir, cfg.name)
    save_config(cfg, run_dir / "config.yaml")
    wandb_run = start_wandb(cfg.tracking, run_dir, dataclasses.asdict(cfg), wandb_extra())
    trainer = PPOTrainer(cfg.ppo, run_dir=run_dir)
    trainer.train(tensorboard_dir=run_dir / "tensorboard" if cfg.tracking.tensorboard else None)

    seeds = range(cfg.eval.seed, cfg.eval.seed + cfg.eval.episodes)
    rows = [
        summarize("ppo", run_episodes(cfg.ppo.env_id, lambda env: trainer.predict, seeds)),
        summarize(
            "random",
            run_episodes(cfg.ppo.env_id, lambda env: random_policy(env, cfg.eval.seed), seeds)),
    ]
    report = {
        "env_id": cfg.ppo.env_id,
        "total_timesteps": int(trainer.model.num_timesteps),
        "train_seconds": trainer.train_seconds,
        "steps_per_second": trainer.steps_per_second,
        "eval_seeds": [seeds.start, seeds.stop - 1],
        "policies": rows,
    }
    atomic_write_text(run_dir / "eval.json", json.dumps(report, indent=2) + "\n")
    plot_learning_curve(run_dir / "monitor", run_dir / "learning_curve.png",
                        f"PPO on {cfg.ppo.env_id}")
    if wandb_run is not None:
        wandb_run.finish()
    print_table(
        f"{cfg.ppo.env_id}: {cfg.eval.episodes} held-out episodes "
        f"({report['total_timesteps']} steps in {trainer.train_seconds:.1f} s, "
        f"{trainer.steps_per_second:.0f} steps/s)", rows)
    log.info("run directory: %s", run_dir)
    report["run_dir"] = str(run_dir)
    return report


@main_guard
def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``trainers-rl`` command."""
    args = parse_args(build_parser(), argv)
    if args.command == "train":
        cfg = config_from_args(DrivingRunConfig, args, resolve_config)
        if args.check:
            _report_checks(preflight(cfg))
        else:
            run_pipeline(cfg, config_sources(args)[0])
    elif args.command == "ppo":
        ppo_cfg = config_from_args(PPORunConfig, args)
        if args.check:
            _report_checks(ppo_preflight(ppo_cfg))
        else:
            run_ppo(ppo_cfg)
    elif args.command == "record-demos":
        cfg = config_from_args(RecordConfig, args)
        path = record_demos(cfg.sim, cfg.demo, cfg.output)
        print(f"demonstrations: {path}")
    elif args.command == "bc":
        print(json.dumps(train_bc(config_from_args(BCConfig, args))))
    elif args.command == "evaluate":
        run_evaluate(config_from_args(EvaluateConfig, args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
