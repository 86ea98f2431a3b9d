"""carla-server: commands for Docker and local CARLA, and real process management.

The local-mode test runs a stand-in CarlaUE4.sh (a shell script that logs and sleeps): what
is under test is the manager's process handling — pid files, logs, stop, kill, status by RPC
— not CARLA, which cannot run here (the `carla`/`docker` workflow starts the real one).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from carla_env.server_cli import main
from carla_env.server_manager import ServerConfig, ServerManager
from trainyard_core.config import ConfigError, load_config


def test_docker_command_runs_the_pinned_image_headless() -> None:
    cfg = ServerConfig(port=2004, quality="Epic")
    command = ServerManager(cfg).docker_run_command(2004)
    assert "carlasim/carla:0.9.16" in command
    assert {"-RenderOffScreen", "-nosound", "-carla-rpc-port=2004",
            "-quality-level=Epic"} <= set(command)
    assert "2004-2005:2004-2005" in command


def test_windowed_local_command_and_port_stride(tmp_path: Path) -> None:
    (tmp_path / "CarlaUE4.sh").write_text("#!/bin/sh\n")
    cfg = ServerConfig(mode="local",
                       headless=False,
                       resolution="800x600",
                       carla_root=str(tmp_path),
                       count=3,
                       port=3000)
    assert cfg.ports == [3000, 3004, 3008]
    command = ServerManager(cfg).local_command(3004)
    assert command[0] == str(tmp_path / "CarlaUE4.sh")
    assert {"-windowed", "-ResX=800", "-ResY=600", "-carla-rpc-port=3004"} <= set(command)
    assert "-RenderOffScreen" not in command


@pytest.mark.parametrize(("override", "message"), [("quality=Ultra", "quality must be one of"),
                                                   ("mode=k8s", "mode must be one of"),
                                                   ("resolution=big", "resolution must be WxH")])
def test_bad_server_settings(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(ServerConfig, overrides=[override])


def test_local_mode_needs_carla_root(capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CARLA_ROOT", raising=False)
    assert main(["start", "--mode", "local", "--port", "2100", "--background"]) == 2
    assert "--carla-root or $CARLA_ROOT" in capsys.readouterr().err


def test_local_server_lifecycle(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = tmp_path / "CarlaUE4.sh"
    script.write_text('#!/bin/sh\necho "stand-in server $*"\nexec sleep 300\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    flags = [
        "--mode", "local", "--port", "2200", "--carla-root",
        str(tmp_path), "--state-dir",
        str(tmp_path / "state")
    ]
    cfg = load_config(ServerConfig,
                      overrides=[
                          "mode=local", "port=2200", f"carla_root={tmp_path}",
                          f"state_dir={tmp_path / 'state'}"
                      ])
    manager = ServerManager(cfg)
    try:
        (status,) = manager.start(wait=False)
        assert status.running and not status.healthy  # no RPC from a stand-in
        assert "not answering RPC" in status.detail
        assert main(["status", *flags]) == 1
        assert "not answering RPC" in capsys.readouterr().out
        assert "stand-in server -RenderOffScreen" in manager.logs(2200) or _eventually(
            lambda: "stand-in server" in manager.logs(2200))
        pid = int((tmp_path / "state" / "carla-2200.pid").read_text())
        manager.stop()
        assert not manager.status(2200).running
        assert not (tmp_path / "state" / "carla-2200.pid").exists()
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
        manager.start(wait=False)
        assert main(["kill", *flags]) == 0  # another manager: the CLI's
        assert not manager.status(2200).running
        assert main(["status", *flags]) == 1
        assert "stopped" in capsys.readouterr().out
    finally:
        manager.kill()


def _eventually(check: object, seconds: float = 5.0) -> bool:
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


def test_docker_mode_without_engine_says_so(capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    code = main(["start", "--port", "2300", "--background"])
    out = capsys.readouterr().out
    assert code == 1
    assert "Docker" in out
