"""Every command reports bad input the same way: one line on stderr starting ``error:``,
nothing on stdout, exit status 2 (``trainyard_core.cli.main_guard`` and ``one_line_errors``).

One usage error (argparse's) and one bad value (the config's or the command's own check) per
subcommand, called in-process through each console script's entry point.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

import pytest

OURS = ("trainyard-",)


def _commands() -> dict[str, Callable[..., Any]]:
    return {
        e.name: e.load()
        for e in entry_points(group="console_scripts")
        if e.dist is not None and e.dist.name.startswith(OURS)
    }


# command -> (argv, what the line must name)
CASES: dict[str, list[tuple[list[str], str]]] = {
    "carla-env": [
        (["bogus"], "invalid choice: 'bogus'"),
        (["config", "scenario=nope"], "scenario must be one of"),
        (["check", "carla_port=abc"], "carla_port=abc"),
        (["baselines", "--episodes", "x"], "--episodes: invalid int value: 'x'"),
        (["baselines", "--episodes", "0"], "--episodes must be >= 1, got 0"),
        (["baselines", "--video", "run.avi"], "must end in .gif or .mp4"),
    ],
    "carla-server": [
        (["start", "--quality", "Ultra"], "quality must be one of Low, Medium, High, Epic"),
        (["status", "count=0"], "count must be >= 1, got 0"),
    ],
    "driving-vla": [
        (["export"], "the following arguments are required: path, --output"),
        (["inspect", "/nonexistent"], "is not a DrivingVLA checkpoint"),
    ],
    "trainers-rl": [
        (["train", "--no-such-flag"], "--no-such-flag"),
        (["train", "sim.scenario=nope"], "scenario must be one of"),
        (["evaluate", "--episodes", "0"], "episodes must be >= 1, got 0"),
        (["bc", "bc.epochs=0"], "unknown key 'bc.epochs'; did you mean epochs?"),
    ],
    "vla-finetune": [(["inspect", "--data-root",
                       "/nonexistent"], "'/nonexistent' is not a directory"),],
    "env-servers": [
        (["serve", "--env", "nope"], "env must be one of babyai"),
        (["serve", "--port", "x"], "port=x"),
        (["check", "--url", "notaurl"], "--url 'notaurl' is not a server URL"),
        (["check", "--wait", "-1"], "--wait must be >= 0 seconds, got -1.0"),
        (["check", "--wait", "soon"], "--wait: invalid float value: 'soon'"),
    ],
    "model-merger": [
        (["merge"], "missing mandatory value: local_dir"),
        (["inspect", "/nonexistent"], "/nonexistent: not a directory"),
    ],
}


def test_every_command_has_bad_input_cases() -> None:
    assert sorted(_commands()) == sorted(CASES)


@pytest.mark.parametrize(("command", "argv", "named"),
                         [(c, argv, named) for c, cases in CASES.items() for argv, named in cases],
                         ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_bad_input_is_one_line_on_stderr_and_exit_2(capsys: pytest.CaptureFixture[str],
                                                    command: str, argv: list[str],
                                                    named: str) -> None:
    main = _commands()[command]
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's usage errors exit from inside main
        code = exc.code
    out, err = capsys.readouterr()
    assert code == 2, err
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert named in err
