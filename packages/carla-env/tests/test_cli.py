"""The carla-env command: config printing and the server check."""

from __future__ import annotations

import os

import pytest

from carla_env.cli import main


def test_config_prints_resolved_yaml(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "--carla-town", "Town03", "backend=carla", "image_width=64"]) == 0
    out = capsys.readouterr().out
    assert "carla_town: Town03" in out
    assert "image_width: 64" in out


def test_town_on_embedded_backend_exits_2_naming_carla(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "--carla-town", "Town03"]) == 2
    err = capsys.readouterr().err
    assert "carla_town='Town03'" in err and "only backend='carla'" in err


def test_carla_env_variables_are_defaults_and_flags_win(capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARLA_HOST", "carla")
    monkeypatch.setenv("CARLA_PORT", "2010")
    assert main(["config"]) == 0
    out = capsys.readouterr().out
    assert "carla_host: carla" in out and "carla_port: 2010" in out
    assert main(["config", "--carla-host", "sim.local", "carla_port=3000"]) == 0
    out = capsys.readouterr().out
    assert "carla_host: sim.local" in out and "carla_port: 3000" in out


def test_bad_config_exits_2_naming_the_key(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "backend=unreal"]) == 2
    assert "backend must be one of" in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "named"), [
    (["baselines", "--episodes", "0"], "--episodes must be >= 1, got 0"),
    (["baselines", "--video", "episode.avi"], "--video 'episode.avi' must end in .gif or .mp4"),
])
def test_bad_baselines_arguments_are_refused_before_driving(capsys: pytest.CaptureFixture[str],
                                                            argv: list[str], named: str) -> None:
    # Before the change, --episodes 0 ended in a traceback and a bad suffix after every episode.
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == f"error: {named}\n"


def test_check_without_server_names_address_and_remedy(capsys: pytest.CaptureFixture[str],
                                                       free_port: int) -> None:
    port = free_port
    assert main(["check", "--carla-host", "127.0.0.1", f"carla_port={port}",
                 "carla_timeout=1"]) == 1
    out, err = capsys.readouterr()
    # One line on stderr like every error; exit 1, not 2: the input was valid.
    assert out == "" and err.startswith("error: ") and err.count("\n") == 1
    assert f"127.0.0.1:{port}" in err
    assert "make carla-up" in err


@pytest.mark.carla
def test_check_reaches_live_server(capsys: pytest.CaptureFixture[str]) -> None:
    host = os.environ.get("CARLA_HOST", "127.0.0.1")
    port = os.environ.get("CARLA_PORT", "2000")
    assert main(["check", f"carla_host={host}", f"carla_port={port}", "carla_timeout=20"]) == 0
    assert "CARLA server 0.9.16" in capsys.readouterr().out
