"""``env-servers``: run an environment server, or check that one answers.

Errors go through ``trainyard_core.cli.main_guard``: one line on stderr, exit 2 for bad
input, 1 when no server answers (as a health check reports "unhealthy"). ``check``'s verdict is
its result, on stdout; everything else is logged to stderr. ``serve``'s ``--log-level`` (or
``-q``/``-v``) sets uvicorn's level and trainyard's together, so one flag quiets the server.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Sequence
from urllib.parse import urlsplit

import httpx
import uvicorn

from env_servers.app import create_app
from env_servers.settings import DEFAULT_PORT, ServeConfig
from trainyard_core.cli import (
    CommandError,
    add_config_arguments,
    config_from_args,
    main_guard,
    parse_args,
    setup_logging,
)
from trainyard_core.config import ConfigError

__all__ = ["DEFAULT_PORT", "ServeConfig", "build_parser", "check_health", "main", "serve"]

# uvicorn's levels (ServeConfig.log_level) as trainyard's logging levels
_OUR_LEVEL = {
    "critical": "error",
    "error": "error",
    "warning": "warning",
    "info": "info",
    "debug": "debug",
    "trace": "debug"
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="env-servers",
                                     description="HTTP environment servers for LLM agents.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_cmd = commands.add_parser(
        "serve",
        help="run the server of one environment family (AgentGym's API, docs at /docs)",
        description="Run one environment family's AgentGym-compatible server with uvicorn: "
        "`env-servers serve --env babyai` (the ENV environment variable is the default).")
    add_config_arguments(serve_cmd, ServeConfig)
    # ServeConfig's --log-level takes the place of parse_args's, so its short forms are here
    loudness = serve_cmd.add_mutually_exclusive_group()
    loudness.add_argument("-q",
                          "--quiet",
                          dest="serve_level",
                          action="store_const",
                          const="warning",
                          help="log_level=warning: only warnings and errors")
    loudness.add_argument("-v",
                          "--verbose",
                          dest="serve_level",
                          action="store_const",
                          const="debug",
                          help="log_level=debug")
    check = commands.add_parser("check",
                                help="check that a server answers GET /health",
                                description="Poll URL/health until it answers 200 or --wait "
                                "seconds pass; exit 1 if it never does.")
    check.add_argument("--url",
                       default=f"http://127.0.0.1:{DEFAULT_PORT}",
                       help="server URL (http:// or https://)")
    check.add_argument("--wait", type=float, default=0.0, help="seconds to keep retrying (>= 0)")
    return parser


def check_health(url: str, wait: float) -> str | None:
    """None when ``url``/health answers 200 within ``wait`` seconds, else why not."""
    deadline = time.monotonic() + wait
    while True:
        try:
            response = httpx.get(f"{url.rstrip('/')}/health", timeout=5)
            if response.status_code == 200:
                return None
            problem = f"{url}/health answered {response.status_code}: {response.text[:200]}"
        except httpx.TransportError as exc:
            problem = f"no env server answered at {url} ({type(exc).__name__}: {exc}); " \
                      "start one with `env-servers serve` or `make docker-env`"
        if time.monotonic() >= deadline:
            return problem
        time.sleep(0.5)


def serve(cfg: ServeConfig) -> None:
    """Run the server in this process until interrupted (one worker: instances live here)."""
    uvicorn.run(create_app(cfg.env, cfg),
                host=cfg.host,
                port=cfg.port,
                log_level=cfg.log_level,
                access_log=cfg.access_log)


def _check_arguments(url: str, wait: float) -> None:
    """Refuse what no server could answer, rather than report it as a server that does not."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"--url {url!r} is not a server URL (expected http://HOST:PORT)")
    if not wait >= 0:  # also NaN
        raise ConfigError(f"--wait must be >= 0 seconds, got {wait}")


@main_guard
def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``env-servers`` command."""
    args = parse_args(build_parser(), argv)
    if args.command == "check":
        _check_arguments(args.url, args.wait)
        problem = check_health(args.url, args.wait)
        if problem:
            raise CommandError(problem)
        print(f"{args.url}: healthy")
        return 0
    cfg = config_from_args(ServeConfig, args)
    if getattr(args, "serve_level", None):
        cfg = dataclasses.replace(cfg, log_level=args.serve_level)
    setup_logging(_OUR_LEVEL[cfg.log_level])
    serve(cfg)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
