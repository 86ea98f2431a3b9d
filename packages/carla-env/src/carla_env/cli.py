"""``carla-env``: inspect a simulator config and check a CARLA server.

Errors go through ``trainyard_core.cli.main_guard``: one line on stderr, exit 2 for bad
input, 1 when no CARLA server answers.
"""

from __future__ import annotations

import argparse
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
        description="Run the embedded simulator's expert autopilot and a random policy on the "
        "same seeded episodes and print route completion, collisions and off-road rates.")
    add_config_arguments(baseline, SimulatorConfig)
    baseline.add_argument("--episodes", type=int, default=100, help="seeded episodes (>= 1)")
    baseline.add_argument("--video",
                          default=None,
                          help="also save one autopilot episode (.gif/.mp4)")
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
        return _baselines(cfg, args.episodes, args.video)
    try:
        client_version, server = server_version(cfg.carla_host, cfg.carla_port, cfg.carla_timeout)
    except CarlaConnectionError as exc:
        raise CommandError(str(exc)) from exc
    print(f"CARLA server {server} at {cfg.carla_host}:{cfg.carla_port} (client {client_version})")
    return 0


def _baselines(cfg: SimulatorConfig, episodes: int, video: str | None) -> int:
    from carla_env.embedded import EmbeddedDrivingEnv
    from carla_env.evaluate import evaluate_baseline
    from carla_env.video import record_episode
    from trainyard_core.table import print_table

    rows = [evaluate_baseline(cfg, policy, episodes) for policy in ("autopilot", "random")]
    print_table(f"{cfg.scenario}: {episodes} seeded episodes", rows)
    if video:
        env = EmbeddedDrivingEnv(cfg, render_mode="rgb_array")
        record_episode(env, lambda _obs: env.autopilot(), video, seed=cfg.seed)
        print(f"video: {video}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
