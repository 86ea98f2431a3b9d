"""The FastAPI application every environment server process runs: one family, its AgentGym
wire format (``routes.py``), its instances (``instances.py``), and errors as real 4xx."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from env_servers import __version__
from env_servers.envs import load_family
from env_servers.envs.base import EnvFamily
from env_servers.errors import ApiError
from env_servers.instances import InstanceManager
from env_servers.routes import add_family_routes
from env_servers.settings import ServeConfig

__all__ = ["Health", "create_app"]

log = logging.getLogger("env_servers.app")
_OFFLOAD = {"auto": None, "thread": True, "inline": False}
# Exceptions a family raises that are the server's trouble, not the client's (by class name, so
# the app never imports a family it does not serve).
_SERVER_SIDE = {"JvmLimitReached": 429, "EnvCrashed": 503, "JvmStartError": 503}


class Health(BaseModel):
    """Answer of ``GET /health``: what orchestrators and Docker's HEALTHCHECK poll."""

    status: str
    version: str
    uptime_s: float
    env: str = ""
    num_tasks: int = 0  # data_idx runs over 0 .. num_tasks - 1
    instances: int = 0
    max_instances: int = 0
    idle_timeout_s: float = 0.0
    reaped: int = 0
    recreated: int = 0  # reaped ids brought back by a /reset on them
    strict_actions: bool = False
    invalid_actions: int = 0  # unparseable actions answered in-game (0 when strict)


def _json(status: int, detail: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"detail": detail, **extra}, status_code=status)


class _LastResort:
    """Turn an unexpected exception into a JSON 5xx naming it, and keep serving.

    Starlette's own handler for ``Exception`` answers plain text and re-raises; a family's
    failure (a dead JVM) is an answer the client should be able to read."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            name = type(exc).__name__
            status = _SERVER_SIDE.get(name, 500)
            if status == 500:
                log.error("%s %s failed", scope.get("method"), scope.get("path"), exc_info=exc)
            else:  # the family's own capacity or crash report: the message says it all
                log.warning("%s %s: %s: %s", scope.get("method"), scope.get("path"), name, exc)
            if started:
                raise
            await _json(status, f"{name}: {exc}")(scope, receive, send)


class _BodyLimit:
    """413 with a JSON message for a body over ``max_bytes``: at once when Content-Length says
    so, else as soon as the streamed bytes pass the limit (nothing larger is buffered)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _message(self, size: str) -> str:
        return f"request body is {size} bytes, larger than max_body_bytes={self.max_bytes}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers", ())).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_bytes:
            await _json(413, self._message(length.decode()))(scope, receive, send)
            return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:  # FastAPI passes HTTPException from the body through
                raise StarletteHTTPException(413, self._message(f"over {seen}"))
            return message

        await self.app(scope, limited_receive, send)


def _validation_message(errors: list[dict[str, Any]]) -> str:
    parts = []
    for error in errors:
        where = ".".join(str(p) for p in error.get("loc", ()))
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return "; ".join(parts)


def _add_error_handlers(app: FastAPI, family: str) -> None:

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _json(exc.status, str(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        bad_json = [e for e in errors if e.get("type") == "json_invalid"]
        if bad_json:
            ctx = bad_json[0].get("ctx", {})
            position = bad_json[0].get("loc", ("body", "?"))[-1]
            return _json(
                400, f"malformed JSON body: {ctx.get('error', 'cannot parse')} "
                f"(at character {position})")
        content_type = request.headers.get("content-type", "")
        if isinstance(exc.body, bytes | bytearray) and exc.body:  # not parsed: not JSON
            return _json(
                415, f"the body must be JSON sent with Content-Type: application/json "
                f"(got {content_type or 'no Content-Type'})")
        summary = [{k: e[k] for k in ("loc", "msg", "type") if k in e} for e in errors]
        return _json(422, _validation_message(errors), errors=summary)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        method, path = request.method, request.url.path
        detail = str(exc.detail)
        if exc.status_code == 404 and detail == "Not Found":
            routes = sorted({getattr(r, "path", "") for r in app.routes} - {""})
            detail = (f"no route {method} {path} on this {family} server; routes: "
                      f"{', '.join(routes)}")
        elif exc.status_code == 405:
            allowed = (exc.headers or {}).get("Allow", "")
            detail = f"{method} {path} is not allowed; use {allowed or 'another method'}"
        response = _json(exc.status_code, detail)
        for key, value in (exc.headers or {}).items():
            response.headers[key] = value
        return response


def reap_interval_s(idle_timeout_s: float) -> float:
    """How often the reaper looks: a quarter of the timeout, between 0.05 s and 30 s."""
    return min(max(idle_timeout_s / 4, 0.05), 30.0)


def create_app(family: EnvFamily | str | None = None,
               settings: ServeConfig | None = None) -> FastAPI:
    """Build the server of one family (``settings.env`` unless given); docs at ``/docs``."""
    settings = settings or ServeConfig()
    if family is None:
        family = settings.env
    if isinstance(family, str):
        family = load_family(family, **settings.family_options())
    manager = InstanceManager(family,
                              max_instances=settings.max_instances,
                              idle_timeout_s=settings.idle_timeout_s,
                              max_action_chars=settings.max_action_chars,
                              offload=_OFFLOAD[settings.offload],
                              strict_actions=settings.strict_actions)
    served = family

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        reaper = asyncio.create_task(manager.run_reaper(reap_interval_s(settings.idle_timeout_s)))
        try:
            yield
        finally:
            reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reaper
            await manager.close_all()
            served.close()

    app = FastAPI(title=f"trainyard env-servers: {family.name}",
                  version=__version__,
                  description="AgentGym-compatible environment server; errors are 4xx with "
                  '{"detail": message}.',
                  lifespan=lifespan)
    app.state.manager = manager
    app.state.settings = settings
    app.add_middleware(_BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(_LastResort)
    _add_error_handlers(app, family.name)
    started = time.monotonic()

    @app.get("/health", response_model=Health, summary="Liveness, family, instance counts")
    async def health() -> Health:
        return Health(status="ok",
                      version=__version__,
                      uptime_s=time.monotonic() - started,
                      env=served.name,
                      num_tasks=manager.num_tasks(),
                      instances=len(manager),
                      max_instances=manager.max_instances,
                      idle_timeout_s=manager.idle_timeout_s,
                      reaped=manager.reaped,
                      recreated=manager.recreated,
                      strict_actions=manager.strict_actions,
                      invalid_actions=manager.invalid_actions)

    add_family_routes(app, manager)
    return app
