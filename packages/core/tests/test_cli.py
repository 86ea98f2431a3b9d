"""One CLI style serves a flag table (seed 002) and dotted overrides (AgentGym-RL's GRPO)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest

from trainyard_core.cli import (
    CommandError,
    add_config_arguments,
    config_from_args,
    config_sources,
    main_guard,
    one_line_errors,
    parse_args,
)
from trainyard_core.config import ConfigError


@dataclasses.dataclass
class Algorithm:
    adv_estimator: str = "gae"
    rounds: int = 1


@dataclasses.dataclass
class Job:
    backend: str = "openvla"
    batch_size: int = 16
    use_lora: bool = True
    lora_rank: int = dataclasses.field(default=32, metadata={"flags": ("--rank",)})
    algorithm: Algorithm = dataclasses.field(default_factory=Algorithm)


def _parse(argv: list[str]) -> Job:
    parser = argparse.ArgumentParser(prog="job")
    add_config_arguments(parser, Job)
    return config_from_args(Job, parse_args(parser, argv))


def test_flag_table_style() -> None:
    cfg = _parse(["--backend", "openpi", "--batch-size", "8", "--no-use-lora", "--rank", "4"])
    assert cfg == Job(backend="openpi", batch_size=8, use_lora=False, lora_rank=4)


def test_dotted_overrides_mixed_with_flags(tmp_path: Path) -> None:
    file = tmp_path / "job.yaml"
    file.write_text("batch_size: 4\nalgorithm: {rounds: 3}\n")
    cfg = _parse(["algorithm.adv_estimator=grpo", "--config", str(file), "--algorithm.rounds", "5"])
    assert cfg.algorithm == Algorithm(adv_estimator="grpo", rounds=5)
    assert cfg.batch_size == 4


def test_key_value_wins_over_flag() -> None:
    assert _parse(["batch_size=2", "--batch-size", "9"]).batch_size == 2


def test_print_config_exits_with_yaml(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _parse(["--print-config", "algorithm.rounds=7"])
    assert exit_info.value.code == 0
    assert "rounds: 7" in capsys.readouterr().out


def test_stray_word_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _parse(["oops"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == (
        "error: job: unrecognized arguments: oops (expected --flags or key=value overrides) "
        "(see `job --help`)\n")


def test_usage_errors_of_subcommands_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    # argparse would print the whole usage first: for a config dataclass, dozens of flags.
    parser = argparse.ArgumentParser(prog="tool")
    commands = parser.add_subparsers(dest="command", required=True)
    add_config_arguments(commands.add_parser("run"), Job)
    commands.add_parser("show").add_argument("--count", type=int)
    cases = {
        ("run", "--batch-size"): "error: tool run: argument --batch-size: expected one argument "
                                 "(see `tool run --help`)\n",
        ("show", "--count", "x"): "error: tool show: argument --count: invalid int value: 'x' "
                                  "(see `tool show --help`)\n",
        ("nope",): "error: tool: argument command: invalid choice: 'nope' (choose from 'run', "
                   "'show') (see `tool --help`)\n",
    }
    for argv, line in cases.items():
        with pytest.raises(SystemExit) as exit_info:
            one_line_errors(parser).parse_args(argv)
        assert exit_info.value.code == 2
        assert capsys.readouterr() == ("", line)


def test_main_guard_turns_config_errors_into_exit_2(capsys: pytest.CaptureFixture[str]) -> None:

    def main(argv: list[str] | None) -> int:
        raise ConfigError("override 'x=1': unknown key 'x'")

    assert main_guard(main)([]) == 2
    assert "unknown key 'x'" in capsys.readouterr().err


def test_main_guard_turns_command_errors_into_exit_1(capsys: pytest.CaptureFixture[str]) -> None:

    def main(argv: list[str] | None) -> int:
        print("checking")
        raise CommandError("no server answered at 127.0.0.1:1")

    assert main_guard(main)([]) == 1
    assert capsys.readouterr() == ("checking\n", "error: no server answered at 127.0.0.1:1\n")


def test_a_command_may_resolve_on_another_base(capsys: pytest.CaptureFixture[str]) -> None:
    # What `trainers-rl train resume=DIR` does: the sources go to the command's resolver,
    # flags included as key=value in order, and --print-config shows its result.
    seen: list[tuple[list[str], list[str]]] = []

    def resolve(cls: type[Job], files: list[str], overrides: list[str]) -> Job:
        seen.append((files, overrides))
        return Job(backend="saved", batch_size=int(overrides[-1].split("=")[1]))

    parser = argparse.ArgumentParser(prog="job")
    add_config_arguments(parser, Job)
    args = parse_args(parser, ["--config", "a.yaml", "--rank", "4", "batch_size=3"])
    assert config_sources(args) == (["a.yaml"], ["lora_rank=4", "batch_size=3"])
    assert config_from_args(Job, args, resolve) == Job(backend="saved", batch_size=3)
    assert seen == [(["a.yaml"], ["lora_rank=4", "batch_size=3"])]
    with pytest.raises(SystemExit):
        config_from_args(Job, parse_args(parser, ["--print-config", "batch_size=5"]), resolve)
    assert "backend: saved" in capsys.readouterr().out
