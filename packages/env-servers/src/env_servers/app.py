"""The FastAPI application every environment server process runs."""

from __future__ import annotations

import time

from fastapi import FastAPI
from pydantic import BaseModel

from env_servers import __version__

__all__ = ["Health", "create_app"]


class Health(BaseModel):
    """Answer of ``GET /health``: what orchestrators and Docker's HEALTHCHECK poll."""

    status: str
    version: str
    uptime_s: float


def create_app() -> FastAPI:
    """Build the application; OpenAPI docs are served at ``/docs``."""
    app = FastAPI(title="trainyard env-servers", version=__version__)
    started = time.monotonic()

    @app.get("/health", response_model=Health)
    def health() -> Health:
        return Health(status="ok", version=__version__, uptime_s=time.monotonic() - started)

    return app
