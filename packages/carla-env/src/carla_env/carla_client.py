"""Connecting to a CARLA server with errors that say what to do next."""

from __future__ import annotations

from typing import Any

__all__ = ["CarlaConnectionError", "connect", "server_version"]


class CarlaConnectionError(ConnectionError):
    """No CARLA server answered at the configured address."""


def _import_carla() -> Any:
    try:
        import carla
    except ImportError as exc:
        raise ImportError("the CARLA backend needs the carla client: "
                          "pip install 'trainyard-carla-env[carla]'") from exc
    return carla


def connect(host: str, port: int, timeout: float) -> Any:
    """Return a ``carla.Client`` whose server answered within ``timeout`` seconds."""
    carla = _import_carla()
    client = carla.Client(host, port)
    client.set_timeout(timeout)
    try:
        # Cheapest RPC that needs a live simulator; raises RuntimeError after the timeout.
        client.get_server_version()
    except RuntimeError as exc:
        raise CarlaConnectionError(
            f"no CARLA server answered at {host}:{port} within {timeout:g} s ({exc}); "
            f"start one with `make carla-up` (Docker) or `CarlaUE4.sh -RenderOffScreen "
            f"-carla-rpc-port={port}`, or set carla_host/carla_port") from exc
    return client


def server_version(host: str, port: int, timeout: float) -> tuple[str, str]:
    """The (client, server) CARLA versions, checking the server is reachable."""
    client = connect(host, port, timeout)
    return client.get_client_version(), client.get_server_version()
