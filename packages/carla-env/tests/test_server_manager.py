"""carla-server: commands for Docker and local CARLA, and real process management.

The local-mode tests run stand-in servers: a CarlaUE4.sh shell script that, like the real one,
runs its engine as a child process (``fake_carla.py``: never opens the RPC port, opens it and
never answers, or answers CARLA's ``version`` call over real msgpack-rpc, which the real
``carla`` client reads). What is under test is the manager's process handling — pid files,
logs, process groups, stop, kill, status by RPC, a start that times out — not CARLA, which
cannot run here (the `carla`/`docker` workflow starts the real one).
"""

from __future__ import annotations

import json
import os
import signal
import stat
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from carla_env.server_cli import COMMANDS, main
from carla_env.server_manager import QUALITIES, ServerConfig, ServerManager
from trainyard_core.config import ConfigError, load_config

FAKE_ENGINE = Path(__file__).with_name("fake_carla.py")
StandIn = Callable[[str], None]  # installs a stand-in CarlaUE4.sh of the given mode


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


@pytest.mark.parametrize(("given", "level"), [("Low", "Low"), ("medium", "Medium"),
                                              ("HIGH", "High"), ("Epic", "Epic")])
def test_seed_quality_levels_reach_the_command_line(given: str, level: str) -> None:
    cfg = load_config(ServerConfig, overrides=[f"quality={given}"])
    assert cfg.quality == level
    assert f"-quality-level={level}" in ServerManager(cfg).docker_run_command(2000)


def test_bad_quality_is_one_line_naming_the_levels(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["start", "--quality", "Ultra", "--background"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "quality must be one of Low, Medium, High, Epic" in err and "'Ultra'" in err


@pytest.mark.parametrize(("override", "message"), [("quality=Ultra", "quality must be one of"),
                                                   ("mode=k8s", "mode must be one of"),
                                                   ("resolution=big", "resolution must be WxH"),
                                                   ("timeout=0", "timeout must be > 0")])
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
        assert "RPC port not open" in status.detail
        assert main(["status", *flags]) == 1
        assert "RPC port not open" in capsys.readouterr().out
        assert "stand-in server -RenderOffScreen" in manager.logs(2200) or _eventually(
            lambda: "stand-in server" in manager.logs(2200))
        pid = int((tmp_path / "state" / "carla-2200.pid").read_text().split()[0])
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
    err = capsys.readouterr().err
    assert code == 1
    assert "Docker" in err


def test_help_lists_commands_and_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["help"]) == 0
    out = capsys.readouterr().out
    assert all(command in out for command in COMMANDS)
    assert "--quality" in out and ", ".join(QUALITIES) in out and "--timeout" in out
    assert main(["help", "start"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: carla-server start") and "--background" in out
    assert main(["help", "logs"]) == 0
    assert "--lines" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["help", "launch"])
    assert exc.value.code == 2
    assert "invalid choice: 'launch'" in capsys.readouterr().err


# ---------------------------------------------------------------- stand-in servers
@pytest.fixture
def stand_in(tmp_path: Path) -> Iterator[StandIn]:
    """Install a stand-in CarlaUE4.sh in ``tmp_path``; kill whatever of it a failed test left."""

    def install(mode: str) -> None:
        # Like the real script, it runs the engine as its child (no exec).
        script = tmp_path / "CarlaUE4.sh"
        script.write_text(
            f'#!/bin/sh\n"{sys.executable}" "{FAKE_ENGINE}" {mode} "{tmp_path}" "$@"\n')
        script.chmod(script.stat().st_mode | stat.S_IEXEC)

    yield install
    for path in tmp_path.glob("engine-*.json"):
        pgid = json.loads(path.read_text())["pgid"]
        if _group_alive(pgid):
            os.killpg(pgid, signal.SIGKILL)


def _local_flags(root: Path, port: int, *more: str) -> list[str]:
    return [
        "--mode", "local", "--carla-root",
        str(root), "--state-dir",
        str(root / "state"), "--port",
        str(port), *more
    ]


def _engine(root: Path, port: int) -> dict[str, int]:
    """pid, ppid (the CarlaUE4.sh script) and pgid the stand-in engine recorded."""
    path = root / f"engine-{port}.json"
    assert _eventually(path.exists), f"the stand-in engine for port {port} never started"
    return json.loads(path.read_text())


def _alive(pid: int) -> bool:
    """Running: present and not a zombie (an exited process waiting to be reaped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _group_alive(pgid: int) -> list[int]:
    """Running processes in process group ``pgid``."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # exited while we looked
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(entry.name))
    return members


def _assert_gone(root: Path, port: int) -> None:
    ids = _engine(root, port)
    assert ids["pgid"] == ids["ppid"]  # the script leads the group; the engine is its child
    assert not _alive(ids["pid"]) and not _alive(ids["ppid"])
    assert _group_alive(ids["pgid"]) == []
    assert not (root / "state" / f"carla-{port}.pid").exists()


def test_start_that_times_out_stops_everything_it_started(
        tmp_path: Path, stand_in: StandIn, free_port: int,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Never opens the RPC port: both servers of the start are stopped, group and all."""
    stand_in("silent")
    flags = _local_flags(tmp_path, free_port, "--count", "2")
    ports = [free_port, free_port + 4]
    began = time.monotonic()
    code = main(["start", *flags, "--timeout", "1.5", "--quality", "medium", "--background"])
    assert time.monotonic() - began < 8
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert f"the CARLA server on port {free_port} did not answer RPC within 1.5 s" in err
    assert (f"stopped what this start launched (port(s) {ports[0]}, {ports[1]}): "
            "nothing left running") in err
    for port in ports:
        _assert_gone(tmp_path, port)
        log = (tmp_path / "state" / f"carla-{port}.log").read_text()
        assert f"-carla-rpc-port={port}" in log and "-quality-level=Medium" in log
    assert main(["status", *flags]) == 1
    assert capsys.readouterr().out.count("stopped") == 2


def test_open_port_that_never_answers_times_out_and_is_stopped(tmp_path: Path, stand_in: StandIn,
                                                               free_port: int) -> None:
    """Listens but never answers RPC (the real client's call times out): stopped too."""
    stand_in("mute")
    cfg = load_config(ServerConfig,
                      overrides=[
                          "mode=local", f"port={free_port}", f"carla_root={tmp_path}",
                          f"state_dir={tmp_path / 'state'}", "timeout=1.5", "quality=HIGH"
                      ])
    manager = ServerManager(cfg)
    with pytest.raises(TimeoutError, match=r"within 1\.5 s.*nothing left running"):
        manager.start()
    _assert_gone(tmp_path, free_port)
    log = manager.logs(free_port)
    assert f"listening on {free_port}" in log and "-quality-level=High" in log
    assert manager.status(free_port).detail == "stopped"


def test_answering_server_starts_healthy_then_stops(tmp_path: Path, stand_in: StandIn,
                                                    free_port: int,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    stand_in("rpc")
    flags = _local_flags(tmp_path, free_port)
    try:
        assert main(["start", *flags, "--quality", "epic", "--timeout", "30", "--background"]) == 0
        assert "healthy, CARLA 0.9.16" in capsys.readouterr().out
        assert main(["status", *flags]) == 0
        ids = _engine(tmp_path, free_port)
        assert _alive(ids["pid"]) and _alive(ids["ppid"])
        assert "-quality-level=Epic" in (tmp_path / "state" / f"carla-{free_port}.log").read_text()
    finally:
        assert main(["stop", *flags]) == 0
    _assert_gone(tmp_path, free_port)


def test_timed_out_start_leaves_a_server_it_did_not_start(tmp_path: Path, stand_in: StandIn,
                                                          free_port: int) -> None:
    stand_in("silent")
    cfg = load_config(ServerConfig,
                      overrides=[
                          "mode=local", f"port={free_port}", f"carla_root={tmp_path}",
                          f"state_dir={tmp_path / 'state'}", "timeout=1"
                      ])
    first = ServerManager(cfg)
    first.start(wait=False)
    try:
        with pytest.raises(TimeoutError) as info:
            ServerManager(cfg).start()
        assert "stopped what this start launched" not in str(info.value)
        assert first.status(free_port).running
    finally:
        first.kill()
    _assert_gone(tmp_path, free_port)
