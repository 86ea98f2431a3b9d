"""The server answers /health, over real HTTP, bound to loopback by default."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import httpx
import pytest

from env_servers.cli import ServeConfig, main


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_default_binding_is_loopback_on_agentgym_port() -> None:
    cfg = ServeConfig()
    assert (cfg.host, cfg.port) == ("127.0.0.1", 36001)


def test_serve_answers_health_and_docs() -> None:
    port = _free_port()
    proc = subprocess.Popen([
        sys.executable, "-m", "env_servers.cli", "serve", "--port",
        str(port), "log_level=warning"
    ])
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.2)
        assert response.status_code == 200
        assert response.json()["status"] == "ok"
        assert httpx.get(f"http://127.0.0.1:{port}/openapi.json").json()["paths"]["/health"]
        assert httpx.get(f"http://127.0.0.1:{port}/nope").status_code == 404
        assert main(["check", "--url", f"http://127.0.0.1:{port}"]) == 0
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_bad_port_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "port=99999"]) == 2
    assert "port must be in 1..65535" in capsys.readouterr().err


def test_check_without_server_names_url(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    assert main(["check", "--url", url, "--wait", "1"]) == 1
    out = capsys.readouterr().out
    assert url in out and "env-servers serve" in out
