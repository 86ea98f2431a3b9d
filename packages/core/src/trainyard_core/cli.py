"""One command-line style for every trainyard tool, generated from its config dataclass.

A command accepts ``--config FILE`` (repeatable), one ``--flag`` per config field, and dotted
``key=value`` overrides, so both a flag table (``--batch-size 8 --use-lora``) and
Hydra-style overrides (``algorithm.adv_estimator=grpo``) reach the same dataclass. Flags are
the field's dotted key with ``_`` written ``-`` (``--optim.lr``, ``--batch-size``), plus any
aliases a field declares in ``metadata={"flags": (...)}``.

Every error ends the same way, one line on stderr starting ``error:``: bad input (a usage
error, a bad config value, a missing file) exits 2; a command that was asked something valid
and could not do it (``CommandError``: no server answered) exits 1, as health checks expect.

Output has two channels: a command's result (a table, a report path, YAML) is printed on stdout;
progress and notices go through ``logging`` to stderr, so ``--quiet``/``--verbose``/
``--log-level`` (or ``TRAINYARD_LOG_LEVEL``), which ``parse_args`` adds to every command, set
how much of it a user sees, and progress bars follow the same level (``progress_enabled``).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TypeVar

from trainyard_core.config import ConfigError, FieldInfo, iter_fields, load_config, to_yaml

T = TypeVar("T")

__all__ = [
    "LOG_LEVELS", "CommandError", "add_config_arguments", "add_logging_arguments",
    "config_from_args", "config_sources", "main_guard", "one_line_errors", "parse_args",
    "progress_enabled", "setup_logging"
]

LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_LEVEL_ENV = "TRAINYARD_LOG_LEVEL"

_OVERRIDES = "_trainyard_overrides"


class CommandError(Exception):
    """The input was valid but the command could not do its job (a server that does not
    answer); ``main_guard`` prints it as one line on stderr and exits 1."""


def one_line_errors(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Make ``parser`` and its subcommands report a usage error as one line on stderr naming
    the command (exit 2), as ``main_guard`` reports bad input, instead of argparse's usage
    block (which buries the error under every flag of a config dataclass)."""

    def error(message: str) -> NoReturn:
        parser.exit(2, f"error: {parser.prog}: {message} (see `{parser.prog} --help`)\n")

    parser.error = error  # type: ignore[method-assign]
    for action in parser._actions:  # argparse keeps subcommands' parsers only here
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                one_line_errors(sub)
    return parser


class _Override(argparse.Action):
    """Record ``--flag value`` as the override ``key=value``, in command-line order."""

    def __init__(self, option_strings: Sequence[str], dest: str, key: str, is_bool: bool,
                 **kwargs: Any) -> None:
        self.key = key
        self.is_bool = is_bool
        if is_bool:
            kwargs["nargs"] = 0
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self,
                 parser: argparse.ArgumentParser,
                 namespace: argparse.Namespace,
                 values: Any,
                 option_string: str | None = None) -> None:
        if self.is_bool:
            value = "false" if option_string and option_string.startswith("--no-") else "true"
        else:
            value = values
        items = list(getattr(namespace, _OVERRIDES, None) or [])
        items.append(f"{self.key}={value}")
        setattr(namespace, _OVERRIDES, items)


def _flag_names(info: FieldInfo) -> list[str]:
    """The field's flag, its declared ``flags`` and one per alias (its old names)."""
    names = [f"--{key.replace('_', '-')}" for key in (info.key, *info.aliases)]
    names += [f for f in info.flags if f not in names]
    return names


def _help_text(info: FieldInfo) -> str:
    default = "required" if info.default is dataclasses.MISSING else f"default: {info.default!r}"
    text = f"{info.help} " if info.help else ""
    return f"{text}({default})".replace("%", "%%")


def add_config_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add ``--config``, ``--print-config``, one flag per field and ``key=value`` overrides."""
    parser.add_argument("--config",
                        action="append",
                        default=[],
                        metavar="FILE",
                        help="YAML config file; repeat to layer several (later files win)")
    parser.add_argument("--print-config",
                        action="store_true",
                        help="print the resolved config as YAML and exit")
    group = parser.add_argument_group(f"{cls.__name__} settings (or write key=value)")
    for info in iter_fields(cls):
        is_bool = info.base_type is bool
        names = _flag_names(info)
        if is_bool:
            names += [n.replace("--", "--no-", 1) for n in names]
        group.add_argument(*names,
                           action=_Override,
                           key=info.key,
                           is_bool=is_bool,
                           dest=argparse.SUPPRESS,
                           default=argparse.SUPPRESS,
                           metavar=info.key.rsplit(".", 1)[-1].upper(),
                           help=_help_text(info))
    parser.set_defaults(overrides=[])
    usage = parser.format_usage().removeprefix("usage: ").strip()
    parser.usage = f"{usage} [key=value ...]"
    epilog = "Dotted key=value overrides may follow, applied after files and flags."
    parser.epilog = f"{parser.epilog}\n\n{epilog}" if parser.epilog else epilog


def add_logging_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add ``-q/--quiet``, ``-v/--verbose`` and ``--log-level`` to ``parser`` and its
    subcommands (so they work before or after a subcommand's name); idempotent."""
    if any("--log-level" in action.option_strings for action in parser._actions):
        return parser
    group = parser.add_argument_group("output")
    common: dict[str, Any] = {"dest": "log_level", "default": argparse.SUPPRESS}
    group.add_argument("-q",
                       "--quiet",
                       action="store_const",
                       const="warning",
                       help="only warnings and errors: no progress lines or bars",
                       **common)
    group.add_argument("-v",
                       "--verbose",
                       action="store_const",
                       const="debug",
                       help="debug messages too",
                       **common)
    group.add_argument("--log-level",
                       choices=LOG_LEVELS,
                       help=f"how much progress to show (default: ${LOG_LEVEL_ENV} or info)",
                       **common)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                add_logging_arguments(sub)
    return parser


class _MessageFormatter(logging.Formatter):
    """Progress lines as plain text; warnings and errors prefixed with their level."""

    def format(self, record: logging.LogRecord) -> str:
        message = super().format(record)
        if record.levelno >= logging.WARNING:
            return f"{record.levelname.lower()}: {message}"
        return message


def setup_logging(level: str | None = None) -> str:
    """Send log records to stderr at ``level`` (else ``$TRAINYARD_LOG_LEVEL``, else info).

    Replaces the handler an earlier call installed, so calling it once per command is safe.
    Returns the level used; an unknown level is bad input.
    """
    level = (level or os.environ.get(LOG_LEVEL_ENV) or "info").lower()
    if level not in LOG_LEVELS:
        raise ConfigError(f"log level must be one of {', '.join(LOG_LEVELS)}, got {level!r} "
                          f"(from --log-level or ${LOG_LEVEL_ENV})")
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_trainyard", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler._trainyard = True  # type: ignore[attr-defined]
    handler.setFormatter(_MessageFormatter("%(message)s"))
    root.addHandler(handler)
    root.setLevel(level.upper())
    return level


def progress_enabled() -> bool:
    """Whether progress displays (tqdm, rich) should draw: the info level is on."""
    return logging.getLogger().isEnabledFor(logging.INFO)


def parse_args(parser: argparse.ArgumentParser,
               argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse ``argv``; bare ``key=value`` words anywhere become ``args.overrides``; a usage
    error is one line (``one_line_errors``); logging is set up at the level asked for
    (``add_logging_arguments``)."""
    add_logging_arguments(parser)
    args, extra = one_line_errors(parser).parse_known_args(argv)
    bad = [word for word in extra if word.startswith("-") or "=" not in word]
    if bad:
        parser.error(f"unrecognized arguments: {' '.join(bad)} "
                     "(expected --flags or key=value overrides)")
    args.overrides = list(getattr(args, "overrides", [])) + extra
    try:
        args.log_level = setup_logging(getattr(args, "log_level", None))
    except ConfigError as exc:
        parser.error(str(exc))
    return args


def config_sources(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """The YAML files and the ``key=value`` overrides (flags included, in order) of a parsed
    command line, lowest precedence first."""
    return list(args.config), list(getattr(args, _OVERRIDES, None) or []) + list(args.overrides)


def config_from_args(cls: type[T],
                     args: argparse.Namespace,
                     resolve: Callable[[type[T], list[str], list[str]], T] | None = None) -> T:
    """Resolve the config a parsed command line describes (see ``add_config_arguments``).

    ``resolve(cls, files, overrides)`` replaces plain layering where a command resolves on
    another base (a resumed run's saved config); ``--print-config`` shows its result.
    """
    files, overrides = config_sources(args)
    if resolve is None:
        cfg = load_config(cls, files=files, overrides=overrides)
    else:
        cfg = resolve(cls, files, overrides)
    if args.print_config:
        sys.stdout.write(to_yaml(cfg))
        raise SystemExit(0)
    return cfg


def main_guard(main: Callable[[Sequence[str] | None], int | None]) -> Callable[..., int]:
    """Wrap a CLI ``main`` so an error ends in one clear line on stderr: exit status 2 for
    bad input, 1 for a ``CommandError``."""

    def wrapped(argv: Sequence[str] | None = None) -> int:
        try:
            return int(main(argv) or 0)
        except (ConfigError, FileNotFoundError, FileExistsError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except CommandError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130

    wrapped.__doc__ = main.__doc__
    wrapped.__name__ = main.__name__
    return wrapped
