"""--quiet/--verbose/--log-level reach logging on every command that uses parse_args."""

from __future__ import annotations

import argparse
import logging

import pytest

from trainyard_core.cli import parse_args, progress_enabled, setup_logging


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tool")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run")
    return parser


@pytest.mark.parametrize(("argv", "level"), [
    (["run"], "info"),
    (["-q", "run"], "warning"),
    (["run", "--quiet"], "warning"),
    (["run", "-v"], "debug"),
    (["--log-level", "error", "run"], "error"),
])
def test_level_from_flags(argv: list[str], level: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRAINYARD_LOG_LEVEL", raising=False)
    args = parse_args(_parser(), argv)
    assert args.log_level == level
    assert logging.getLogger().level == getattr(logging, level.upper())
    assert progress_enabled() == (level in ("debug", "info"))


def test_env_default_and_flag_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAINYARD_LOG_LEVEL", "warning")
    assert parse_args(_parser(), ["run"]).log_level == "warning"
    assert parse_args(_parser(), ["run", "-v"]).log_level == "debug"


def test_bad_level_is_one_line_usage_error(monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TRAINYARD_LOG_LEVEL", "loud")
    with pytest.raises(SystemExit) as exit_info:
        parse_args(_parser(), ["run"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "TRAINYARD_LOG_LEVEL" in err and "loud" in err and err.count("\n") == 1


def test_quiet_hides_progress_not_warnings(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("warning")
    log = logging.getLogger("trainyard.test")
    log.info("progress line")
    log.warning("something odd")
    err = capsys.readouterr().err
    assert "progress line" not in err
    assert "warning: something odd" in err
    setup_logging("info")
    log.info("progress line")
    assert capsys.readouterr().err.strip() == "progress line"
    assert sum(getattr(h, "_trainyard", False) for h in logging.getLogger().handlers) == 1
