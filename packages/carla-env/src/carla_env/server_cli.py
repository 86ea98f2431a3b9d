"""``carla-server``: start|stop|status|logs|kill|restart CARLA servers (Docker or local)."""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

from carla_env.server_manager import ServerConfig, ServerManager
from trainyard_core.cli import add_config_arguments, config_from_args, main_guard, parse_args
from trainyard_core.table import print_table

ACTIONS = ("start", "stop", "status", "logs", "kill", "restart")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="carla-server",
        description="Manage CARLA 0.9.16 servers: in Docker (carlasim/carla:0.9.16) or from a "
        "local installation (CarlaUE4.sh). Servers are known by their RPC port.")
    commands = parser.add_subparsers(dest="action", required=True)
    for action in ACTIONS:
        sub = commands.add_parser(action, help=f"{action} the server(s)")
        add_config_arguments(sub, ServerConfig)
        if action in ("start", "restart"):
            sub.add_argument("--background",
                             action="store_true",
                             help="return once healthy instead of following the log")
        if action == "logs":
            sub.add_argument("--lines", type=int, default=100, help="last lines to show")
    return parser


@main_guard
def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``carla-server`` command."""
    args = parse_args(build_parser(), argv)
    cfg = config_from_args(ServerConfig, args)
    try:
        return _run(args, cfg)
    except (RuntimeError, TimeoutError) as exc:
        print(f"error: {exc}")
        return 1


def _run(args: argparse.Namespace, cfg: ServerConfig) -> int:
    manager = ServerManager(cfg)
    if args.action in ("start", "restart"):
        statuses = manager.restart() if args.action == "restart" else manager.start(wait=True)
        print_table("CARLA servers", [vars(s) for s in statuses])
        if not args.background:
            print("following the first server's log; Ctrl-C stops the server(s)")
            try:
                while True:
                    time.sleep(5.0)
                    if not manager.status(cfg.port).running:
                        print(manager.logs(cfg.port, 20))
                        return 1
            except KeyboardInterrupt:
                manager.stop()
        return 0
    if args.action in ("stop", "kill"):
        manager.kill() if args.action == "kill" else manager.stop()
        print(f"{args.action}: ports {', '.join(map(str, cfg.ports))}")
        return 0
    if args.action == "logs":
        for port in cfg.ports:
            print(manager.logs(port, args.lines))
        return 0
    statuses = [manager.status(p) for p in cfg.ports]
    print_table("CARLA servers", [vars(s) for s in statuses])
    return 0 if all(s.healthy for s in statuses) else 1


if __name__ == "__main__":
    raise SystemExit(main())
