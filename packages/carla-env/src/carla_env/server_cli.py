"""``carla-server``: start|stop|status|logs|kill|restart|help CARLA servers (Docker or local).

The commands and flags follow the seed's ``carla_server_manager.sh`` (``start --headless
--background --quality Medium --port 2001``, ``help``), so its users' command lines work.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Sequence

from carla_env.server_manager import QUALITIES, ServerConfig, ServerManager
from trainyard_core.cli import (
    CommandError,
    add_config_arguments,
    config_from_args,
    main_guard,
    parse_args,
)
from trainyard_core.table import print_table

log = logging.getLogger(__name__)

# What each command does, shown by `carla-server --help`, `carla-server help` and its own help.
COMMANDS = {
    "start": "start the server(s) and wait until each answers RPC; one that does not within "
             "--timeout is stopped (with everything this start launched)",
    "stop": "stop the server(s): local, SIGTERM to each whole process group and SIGKILL "
            "after 20 s; Docker, docker stop",
    "status": "show whether each server runs and answers RPC (exit 1 unless all healthy)",
    "logs": "show the last --lines lines of each server's log",
    "kill": "force-kill the server(s) at once (SIGKILL to the process group)",
    "restart": "stop, then start and wait as `start` does",
    "help": "show all commands and options, or one command's (carla-server help start)",
}
ACTIONS = tuple(c for c in COMMANDS if c != "help")

EPILOG = f"""\
quality levels (--quality, passed as -quality-level=...): {', '.join(QUALITIES)}, any case;
  Low renders fastest (training), Epic looks best (evaluation, videos).

examples:
  carla-server start --headless --background                  # Docker, port 2000
  carla-server start --headless --background --quality Medium --port 2001
  carla-server start --mode local --carla-root /opt/carla --count 4 --background
  carla-server status --port 2000
  carla-server logs --port 2000 --lines 50
  carla-server stop --port 2000
  carla-server help start                                     # one command's options
"""


def _build() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    parser = argparse.ArgumentParser(
        prog="carla-server",
        description="Manage CARLA 0.9.16 servers: in Docker (carlasim/carla:0.9.16) or from a\n"
        "local installation (CarlaUE4.sh). Servers are known by their RPC port.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="action", required=True, metavar="COMMAND")
    subs = {}
    for action, text in COMMANDS.items():
        sub = commands.add_parser(action, help=text, description=f"carla-server {action}: {text}")
        subs[action] = sub
        if action == "help":
            sub.add_argument("command",
                             nargs="?",
                             choices=tuple(COMMANDS),
                             metavar="COMMAND",
                             help=f"one of {', '.join(COMMANDS)}")
            continue
        add_config_arguments(sub, ServerConfig)
        if action in ("start", "restart"):
            sub.add_argument("--background",
                             action="store_true",
                             help="return once healthy instead of following the log")
        if action == "logs":
            sub.add_argument("--lines", type=int, default=100, help="last lines to show")
    return parser, subs


def build_parser() -> argparse.ArgumentParser:
    return _build()[0]


@main_guard
def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``carla-server`` command."""
    parser, subs = _build()
    args = parse_args(parser, argv)
    if args.action == "help":
        if args.overrides:
            parser.error(f"help takes one command name, not {' '.join(args.overrides)}")
        if args.command:
            subs[args.command].print_help()
            return 0
        # Like the seed's `help`: every command, then every option (start has them all).
        parser.print_help()
        print("\n" + subs["start"].format_help().rstrip())
        return 0
    cfg = config_from_args(ServerConfig, args)
    try:
        return _run(args, cfg)
    except (RuntimeError, TimeoutError) as exc:
        raise CommandError(str(exc)) from exc


def _run(args: argparse.Namespace, cfg: ServerConfig) -> int:
    manager = ServerManager(cfg)
    if args.action in ("start", "restart"):
        statuses = manager.restart() if args.action == "restart" else manager.start(wait=True)
        print_table("CARLA servers", [vars(s) for s in statuses])
        if not args.background:
            log.info("watching the server on port %d; Ctrl-C stops the server(s)", cfg.port)
            try:
                while True:
                    time.sleep(5.0)
                    if not manager.status(cfg.port).running:
                        log.error("the server on port %d stopped; its last log lines:\n%s",
                                  cfg.port, manager.logs(cfg.port, 20))
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
