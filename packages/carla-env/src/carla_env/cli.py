"""``carla-env``: inspect a simulator config and check a CARLA server.

Errors go through ``trainyard_core.cli.main_guard``: one line on stderr, exit 2 for bad
input, 1 when no CARLA server answers. Results (YAML, the table, the video's path) go to
stdout; progress and notices to the log (stderr, ``-q``/``-v``).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

from carla_env.carla_client import CarlaConnectionError, server_version
from carla_env.config import SimulatorConfig
from trainyard_core.cli import (
    CommandError,
    add_config_arguments,
    config_from_args,
    main_guard,
    parse_args,
)
from trainyard_core.config import ConfigError, to_yaml

VIDEO_SUFFIXES = (".gif", ".mp4")

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="carla-env",
                                     description="trainyard driving environments.")
    commands = parser.add_subparsers(dest="command", required=True)
    show = commands.add_parser("config",
                               help="validate a simulator config and print it resolved",
                               description="Validate a SimulatorConfig and print it as YAML.")
    add_config_arguments(show, SimulatorConfig)
    check = commands.add_parser("check",
                                help="check that a CARLA server answers",
                                description="Connect to the CARLA server of a SimulatorConfig "
                                "and print its version; exit 1 if none answers.")
    add_config_arguments(check, SimulatorConfig)
    baseline = commands.add_parser(
        "baselines",
        help="evaluate the autopilot and a random policy on seeded episodes",
        description="Run the baselines (the expert autopilot, where the backend has one, and "
        "a random policy) on the same seeded episodes of the configured backend and print "
        "the closed-loop table: route completion, collisions per km, off-road, speed, jerk.")
    add_config_arguments(baseline, SimulatorConfig)
    baseline.add_argument("--episodes", type=int, default=100, help="seeded episodes (>= 1)")
    baseline.add_argument("--eval-seed",
                          type=int,
                          default=1_000_000,
                          help="env seed of the first episode (training uses seeds below "
                          "1,000,000)")
    baseline.add_argument("--video",
                          default=None,
                          help="also save the first seed's episode (.gif/.mp4) of the "
                          "autopilot (random where the backend has no expert)")
    return parser


@main_guard
def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``carla-env`` command."""
    args = parse_args(build_parser(), argv)
    cfg = config_from_args(SimulatorConfig, args)
    if args.command == "config":
        print(to_yaml(cfg), end="")
        return 0
    if args.command == "baselines":
        # Checked before any episode runs, not after minutes of driving.
        if args.episodes < 1:
            raise ConfigError(f"--episodes must be >= 1, got {args.episodes}")
        if args.video and Path(args.video).suffix.lower() not in VIDEO_SUFFIXES:
            raise ConfigError(f"--video {args.video!r} must end in "
                              f"{' or '.join(VIDEO_SUFFIXES)}")
        return _baselines(cfg, args.episodes, args.eval_seed, args.video)
    try:
        client_version, server = server_version(cfg.carla_host, cfg.carla_port, cfg.carla_timeout)
    except CarlaConnectionError as exc:
        raise CommandError(str(exc)) from exc
    print(f"CARLA server {server} at {cfg.carla_host}:{cfg.carla_port} (client {client_version})")
    return 0


def _baselines(cfg: SimulatorConfig, episodes: int, seed: int, video: str | None) -> int:
    from carla_env.contract import EXPERT_BACKENDS
    from carla_env.evaluation import BASELINES, evaluate_policies, needs_expert, record_video
    from trainyard_core.table import print_table

    policies = {name: make() for name, make in BASELINES.items()}
    if cfg.backend not in EXPERT_BACKENDS:
        skipped = [name for name, policy in policies.items() if needs_expert(policy)]
        policies = {k: v for k, v in policies.items() if k not in skipped}
        log.warning("the %s backend has no expert (no info['expert_action']): leaving out %s",
                    cfg.backend, ", ".join(skipped))
    rows = evaluate_policies(cfg, policies, episodes, seed)
    print_table(f"{cfg.scenario} ({cfg.backend}): {episodes} episodes from env seed {seed}", rows)
    if video:
        name, policy = next(iter(policies.items()))
        log.info("recording the %s episode of env seed %d", name, seed)
        record_video(cfg, policy, seed, video)
        print(f"video: {video}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
