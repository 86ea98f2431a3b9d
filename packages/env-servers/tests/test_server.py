"""The server process: /health over real HTTP, loopback by default, the family chosen by
``--env`` or the ``ENV`` variable, and clear exits for bad settings."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest

from env_servers.cli import ServeConfig, main
from env_servers.envs import FAMILIES, load_family
from env_servers.testing import free_port, server_process, wait_healthy


def test_default_binding_is_loopback_on_agentgym_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ENV", raising=False)
    cfg = ServeConfig()
    assert (cfg.host, cfg.port, cfg.env) == ("127.0.0.1", 36001, "babyai")


def test_env_variable_picks_the_family(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENV", "textcraft")
    assert ServeConfig().env == "textcraft"


def test_serve_answers_health_and_docs() -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "ENV"}
    proc = subprocess.Popen([
        sys.executable, "-m", "env_servers.cli", "serve", "--port",
        str(port), "log_level=warning"
    ],
                            env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, 30, proc)
        health = httpx.get(f"{url}/health").json()
        assert (health["status"], health["env"], health["num_tasks"]) == ("ok", "babyai", 40000)
        paths = httpx.get(f"{url}/openapi.json").json()["paths"]
        assert {"/health", "/create", "/reset", "/step", "/observation", "/close"} <= set(paths)
        assert httpx.get(f"{url}/docs").status_code == 200
        assert httpx.get(f"{url}/nope").status_code == 404
        assert main(["check", "--url", url]) == 0
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_env_flag_serves_textcraft() -> None:
    with server_process(["--env", "textcraft", "max_instances=2"]) as url:
        health = httpx.get(f"{url}/health").json()
        assert (health["env"], health["max_instances"]) == ("textcraft", 2)
        created = httpx.post(f"{url}/create").json()
        assert created["observation"].startswith("Crafting commands:")


def test_bad_port_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "port=99999"]) == 2
    assert "port must be in 1..65535" in capsys.readouterr().err


@pytest.mark.parametrize(("args", "message"), [
    (["--env", "minecraft"], "env must be one of babyai, textcraft, sciworld, searchqa"),
    (["max_instances=0"], "max_instances must be >= 1"),
    (["idle_timeout_s=0"], "idle_timeout_s must be > 0"),
    (["--offload", "gpu"], "offload must be one of auto, thread, inline"),
    (["--env-options", "[1]"], "env_options must be a JSON object"),
])
def test_bad_settings_exit_2_naming_them(capsys: pytest.CaptureFixture[str], args: list[str],
                                         message: str) -> None:
    assert main(["serve", *args]) == 2
    assert message in capsys.readouterr().err


def test_unknown_family_names_the_known_ones() -> None:
    with pytest.raises(ValueError,
                       match="unknown environment family 'chess'; known: " + ", ".join(FAMILIES)):
        load_family("chess")
    assert load_family("babyai", seeds_per_level=2).num_tasks() == 80


def test_check_without_server_names_url(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    assert main(["check", "--url", url, "--wait", "1"]) == 1
    out, err = capsys.readouterr()
    # One line on stderr like every error; exit 1 (a health check's "unhealthy"), not 2.
    assert out == "" and err.startswith("error: ") and err.count("\n") == 1
    assert url in err and "env-servers serve" in err


@pytest.mark.parametrize(("args", "message"), [
    (["--url", "localhost:36001"], "--url 'localhost:36001' is not a server URL (expected http"),
    (["--wait", "-1"], "--wait must be >= 0 seconds, got -1.0"),
])
def test_bad_check_arguments_exit_2_without_polling(capsys: pytest.CaptureFixture[str],
                                                    args: list[str], message: str) -> None:
    assert main(["check", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {message}") and err.count("\n") == 1


@pytest.mark.parametrize("flags, shown", [([], True), (["-q"], False),
                                          (["log_level=warning"], False)])
def test_serve_log_level_sets_the_servers_notices_too(flags: list[str], shown: bool) -> None:
    """One flag for uvicorn's log and trainyard's: searchqa's index notice follows it."""
    port = free_port()
    proc = subprocess.Popen([
        sys.executable, "-m", "env_servers.cli", "serve", "--env", "searchqa", "--port",
        str(port), *flags
    ],
                            stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE,
                            text=True)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", 30, proc)
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=15)
    assert ("searchqa: building the BM25 index over" in err) is shown, err
    assert ("Uvicorn running on" in err) is shown, err
    assert out == ""
