"""A typed client for AgentGym-compatible environment servers, sync and async.

One client speaks every family's wire format, so rollout code never special-cases one:

- ``babyai``, ``textcraft``, ``sciworld``: JSON bodies keyed by ``id``; ``/create`` answers
  ``{"id": N, ...}``, ``/reset`` and ``/step`` answer objects with ``observation``, ``reward``,
  ``done`` (and ``score`` where the family keeps one); SciWorld's ``/reset`` adds a
  ``task_description`` that the agent must see, so it is put before the observation.
- ``searchqa``: keyed by ``env_idx``; ``/create`` (body ``{"id": 0}``) answers a bare number,
  ``/reset`` (body ``{"env_idx", "id": data_idx}``) and ``/observation`` a bare string.

Errors: our servers answer real HTTP statuses with a FastAPI ``{"detail": ...}`` body; the
original AgentGym servers answer HTTP 200 with ``{"error": ...}``, which their clients turned
into a silent score of 0. Both raise ``EnvServerError`` here, with the status and the message.

Retries (``retries`` extra attempts, exponential backoff), and why only these:

- A connection that could not be opened (``ConnectError``, ``ConnectTimeout``) never carried
  the request, so every call is retried: this is what rides out a server that is starting or
  restarting.
- A failure after the request may have reached the server (read timeout, dropped connection)
  is retried only for calls whose repetition is harmless: ``health``, ``observation``,
  ``reset`` (it puts the instance in the same state again) and ``close`` (a ``false`` or,
  from older servers, a 404 on the retry means the first attempt did close it). ``create``
  would leak an instance and ``step`` would apply the action twice, so they raise instead.
- An HTTP error status (4xx, 429, 5xx) is the server's answer, never retried: a 429 means it
  is at capacity, which more requests do not fix.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Mapping
from typing import Any, Literal

import httpx

__all__ = ["FAMILIES", "AsyncEnvClient", "EnvClient", "EnvServerError", "ResetResult", "StepResult"]

FAMILIES = ("babyai", "textcraft", "sciworld", "searchqa")
DEFAULT_URL = "http://127.0.0.1:36001"

# Transport errors where the request certainly never left this process.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout)
# Transport errors after which the server may or may not have acted on the request.
_MAYBE_SENT = (httpx.ReadTimeout, httpx.WriteTimeout, httpx.ReadError, httpx.WriteError,
               httpx.RemoteProtocolError)

Safety = Literal["unsafe", "idempotent", "close"]


class EnvServerError(RuntimeError):
    """A call the server refused or could not be reached for.

    ``status`` is the HTTP status (200 for an AgentGym-style ``{"error": ...}`` body) or
    ``None`` when no answer came; ``message`` is the server's own text and ``detail`` the body's
    ``detail`` as sent (a string for our servers' refusals, a list for request validation).
    """

    def __init__(self,
                 message: str,
                 status: int | None = None,
                 path: str = "",
                 detail: Any = None) -> None:
        self.status = status
        self.message = message
        self.path = path
        self.detail = detail
        where = f"{path}: " if path else ""
        code = f"HTTP {status}: " if status is not None else ""
        super().__init__(f"{where}{code}{message}")


@dataclasses.dataclass
class ResetResult:
    """What an agent sees when a task starts."""

    observation: str
    raw: Any = None


@dataclasses.dataclass
class StepResult:
    """One step's answer; ``score`` is the family's running score where it keeps one."""

    observation: str
    reward: float
    done: bool
    score: float | None = None
    raw: Any = None
    info: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def invalid_action(self) -> bool:
        """The server did not understand the action and answered with its in-game message
        (our servers mark it in ``info``; AgentGym's never do)."""
        return bool(self.info.get("invalid_action"))


@dataclasses.dataclass(frozen=True)
class _Call:
    """One HTTP request in a family's wire format, and how safe it is to repeat."""

    method: str
    path: str
    safety: Safety
    json: dict[str, Any] | None = None
    params: dict[str, Any] | None = None


class _Wire:
    """Builds requests and reads answers for one family (no I/O, shared by both clients)."""

    def __init__(self, env: str) -> None:
        if env not in FAMILIES:
            raise ValueError(f"unknown environment family {env!r}; expected one of {FAMILIES}")
        self.env = env
        self.key = "env_idx" if env == "searchqa" else "id"

    def create(self) -> _Call:
        body: dict[str, Any] = {"id": 0} if self.env == "searchqa" else {}
        return _Call("POST", "/create", "unsafe", json=body)

    def reset(self, env_id: int, data_idx: int) -> _Call:
        body = {self.key: env_id, "id" if self.env == "searchqa" else "data_idx": data_idx}
        return _Call("POST", "/reset", "idempotent", json=body)

    def step(self, env_id: int, action: str) -> _Call:
        return _Call("POST", "/step", "unsafe", json={self.key: env_id, "action": action})

    def observation(self, env_id: int) -> _Call:
        return _Call("GET", "/observation", "idempotent", params={self.key: env_id})

    def close(self, env_id: int) -> _Call:
        # Every family, SearchQA included, names the instance ``id`` in /close.
        return _Call("POST", "/close", "close", json={"id": env_id})

    def health(self) -> _Call:
        return _Call("GET", "/health", "idempotent")

    def greeting(self) -> _Call:
        # AgentGym's servers have no /health; their "/" answers a greeting string.
        return _Call("GET", "/", "idempotent")

    @staticmethod
    def parse_health(payload: Any) -> dict[str, Any]:
        return payload if isinstance(payload, dict) else {"status": "ok", "greeting": payload}

    def parse_create(self, payload: Any) -> int:
        value = payload.get(self.key, payload.get("id")) if isinstance(payload, dict) else payload
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise EnvServerError(f"/create answered {payload!r}, expected an instance id", 200,
                                 "/create")
        return value

    def parse_reset(self, payload: Any) -> ResetResult:
        if isinstance(payload, str):
            return ResetResult(observation=payload, raw=payload)
        observation = _text(payload, "/reset")
        if self.env == "sciworld" and payload.get("task_description"):
            observation = f"{payload['task_description']}\n{observation}"
        return ResetResult(observation=observation, raw=payload)

    def parse_step(self, payload: Any) -> StepResult:
        observation = _text(payload, "/step")
        score = payload.get("score")
        info = payload.get("info")
        return StepResult(observation=observation,
                          reward=float(payload.get("reward") or 0.0),
                          done=bool(payload.get("done", False)),
                          score=None if score is None else float(score),
                          raw=payload,
                          info=dict(info) if isinstance(info, dict) else {})

    @staticmethod
    def parse_close(payload: Any, ambiguous: bool) -> bool:
        # ``false``: nothing was there to close. After a retry that is our first attempt's doing.
        return payload is not False or ambiguous

    @staticmethod
    def parse_observation(payload: Any) -> str:
        return payload if isinstance(payload, str) else _text(payload, "/observation")


def _text(payload: Any, path: str) -> str:
    if not isinstance(payload, dict) or not isinstance(payload.get("observation"), str):
        raise EnvServerError(f"answer has no observation text: {str(payload)[:200]}", 200, path)
    return str(payload["observation"])


def _refusal(response: httpx.Response, call: _Call) -> EnvServerError:
    """The server's own words: FastAPI's ``detail`` (a string or validation errors)."""
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()[:500] or response.reason_phrase
        return EnvServerError(text, response.status_code, call.path)
    detail = body.get("detail", body.get("error")) if isinstance(body, dict) else None
    if isinstance(detail, list):  # pydantic validation errors
        message = "; ".join(f"{'.'.join(str(p) for p in d.get('loc', ()))}: {d.get('msg', d)}"
                            if isinstance(d, dict) else str(d) for d in detail)
    else:
        message = str(detail) if detail is not None else str(body)[:500]
    return EnvServerError(message, response.status_code, call.path, detail)


def _answer(response: httpx.Response, call: _Call) -> Any:
    if response.status_code >= 400:
        raise _refusal(response, call)
    try:
        payload = response.json()
    except ValueError as exc:
        raise EnvServerError(f"answer is not JSON: {response.text[:200]!r}", response.status_code,
                             call.path) from exc
    if isinstance(payload, dict) and payload.get("error") and "observation" not in payload:
        # AgentGym's servers report failures as HTTP 200 with {"error": ...}.
        raise EnvServerError(str(payload["error"]), response.status_code, call.path,
                             payload["error"])
    return payload


def _retryable(exc: httpx.TransportError, call: _Call) -> bool:
    if isinstance(exc, _NOT_SENT):
        return True
    return isinstance(exc, _MAYBE_SENT) and call.safety != "unsafe"


def _backoff(attempt: int, base: float) -> float:
    return float(min(base * 2**attempt, 10.0))


def _unreachable(exc: httpx.TransportError, call: _Call, base_url: str,
                 attempts: int) -> EnvServerError:
    sent = "" if isinstance(exc, _NOT_SENT) else " (the request may have reached the server)"
    return EnvServerError(
        f"no answer from {base_url} after {attempts} attempt(s){sent}: "
        f"{type(exc).__name__}: {exc}", None, call.path)


class _Base:

    def __init__(self, base_url: str, env: str, timeout: float, retries: int,
                 backoff: float) -> None:
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        self.base_url = base_url.rstrip("/")
        self.env = env
        self.wire = _Wire(env)
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff

    def _closed_already(self, exc: EnvServerError, call: _Call, ambiguous: bool) -> bool:
        # A retried /close whose first attempt went through finds nothing left to close (older
        # servers answered that with 404; today's answer 200 ``false``).
        return call.safety == "close" and ambiguous and exc.status == 404


class EnvClient(_Base):
    """Blocking client for one server (one environment family).

    ``timeout`` is per request (seconds); ``retries`` bounds the extra attempts described in
    the module docstring; ``backoff`` is the first wait between attempts (doubling, at most
    10 s). Use as a context manager, or call ``close_client()``.
    """

    def __init__(self,
                 base_url: str = DEFAULT_URL,
                 env: str = "babyai",
                 timeout: float = 300.0,
                 retries: int = 3,
                 backoff: float = 0.5,
                 transport: httpx.BaseTransport | None = None) -> None:
        super().__init__(base_url, env, timeout, retries, backoff)
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, transport=transport)

    def __enter__(self) -> EnvClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close_client()

    def close_client(self) -> None:
        """Close the HTTP connections (not the server's instances)."""
        self._http.close()

    def _send(self, call: _Call) -> Any:
        ambiguous = False
        for attempt in range(self.retries + 1):
            try:
                response = self._http.request(call.method,
                                              call.path,
                                              json=call.json,
                                              params=call.params)
            except httpx.TransportError as exc:
                if attempt == self.retries or not _retryable(exc, call):
                    raise _unreachable(exc, call, self.base_url, attempt + 1) from exc
                ambiguous = ambiguous or not isinstance(exc, _NOT_SENT)
                time.sleep(_backoff(attempt, self.backoff))
                continue
            try:
                payload = _answer(response, call)
            except EnvServerError as exc:
                if self._closed_already(exc, call, ambiguous):
                    return True
                raise
            if call.safety == "close":
                return self.wire.parse_close(payload, ambiguous)
            return payload
        raise AssertionError("unreachable")

    def health(self) -> dict[str, Any]:
        """``GET /health``: the server's status object (an AgentGym server's greeting)."""
        try:
            return self.wire.parse_health(self._send(self.wire.health()))
        except EnvServerError as exc:
            if exc.status != 404:
                raise
        return self.wire.parse_health(self._send(self.wire.greeting()))

    def create(self) -> int:
        """A new instance's id (never retried once the request may have been sent)."""
        return self.wire.parse_create(self._send(self.wire.create()))

    def reset(self, env_id: int, data_idx: int = 0) -> ResetResult:
        """Start task ``data_idx`` on instance ``env_id``."""
        return self.wire.parse_reset(self._send(self.wire.reset(env_id, data_idx)))

    def step(self, env_id: int, action: str) -> StepResult:
        """Apply ``action`` (never retried once the request may have been sent)."""
        return self.wire.parse_step(self._send(self.wire.step(env_id, action)))

    def observation(self, env_id: int) -> str:
        """The instance's current observation."""
        return self.wire.parse_observation(self._send(self.wire.observation(env_id)))

    def close(self, env_id: int) -> bool:
        """Free instance ``env_id`` on the server: ``True``, or ``False`` when the server had
        nothing to close (already closed, reaped, never created)."""
        return bool(self._send(self.wire.close(env_id)))


class AsyncEnvClient(_Base):
    """Asynchronous client for many concurrent agents sharing one connection pool.

    ``max_connections`` should be at least the number of agents stepping at once: a request
    beyond it waits for a free connection (up to ``timeout``) instead of opening a new one.
    """

    def __init__(self,
                 base_url: str = DEFAULT_URL,
                 env: str = "babyai",
                 timeout: float = 300.0,
                 retries: int = 3,
                 backoff: float = 0.5,
                 max_connections: int = 64,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        super().__init__(base_url, env, timeout, retries, backoff)
        limits = httpx.Limits(max_connections=max_connections,
                              max_keepalive_connections=max_connections)
        self._http = httpx.AsyncClient(base_url=self.base_url,
                                       timeout=timeout,
                                       limits=limits,
                                       transport=transport)

    async def __aenter__(self) -> AsyncEnvClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose_client()

    async def aclose_client(self) -> None:
        """Close the HTTP connections (not the server's instances)."""
        await self._http.aclose()

    async def _send(self, call: _Call) -> Any:
        ambiguous = False
        for attempt in range(self.retries + 1):
            try:
                response = await self._http.request(call.method,
                                                    call.path,
                                                    json=call.json,
                                                    params=call.params)
            except httpx.TransportError as exc:
                if attempt == self.retries or not _retryable(exc, call):
                    raise _unreachable(exc, call, self.base_url, attempt + 1) from exc
                ambiguous = ambiguous or not isinstance(exc, _NOT_SENT)
                await asyncio.sleep(_backoff(attempt, self.backoff))
                continue
            try:
                payload = _answer(response, call)
            except EnvServerError as exc:
                if self._closed_already(exc, call, ambiguous):
                    return True
                raise
            if call.safety == "close":
                return self.wire.parse_close(payload, ambiguous)
            return payload
        raise AssertionError("unreachable")

    async def health(self) -> dict[str, Any]:
        """``GET /health``: the server's status object (an AgentGym server's greeting)."""
        try:
            return self.wire.parse_health(await self._send(self.wire.health()))
        except EnvServerError as exc:
            if exc.status != 404:
                raise
        return self.wire.parse_health(await self._send(self.wire.greeting()))

    async def create(self) -> int:
        """A new instance's id (never retried once the request may have been sent)."""
        return self.wire.parse_create(await self._send(self.wire.create()))

    async def reset(self, env_id: int, data_idx: int = 0) -> ResetResult:
        """Start task ``data_idx`` on instance ``env_id``."""
        return self.wire.parse_reset(await self._send(self.wire.reset(env_id, data_idx)))

    async def step(self, env_id: int, action: str) -> StepResult:
        """Apply ``action`` (never retried once the request may have been sent)."""
        return self.wire.parse_step(await self._send(self.wire.step(env_id, action)))

    async def observation(self, env_id: int) -> str:
        """The instance's current observation."""
        return self.wire.parse_observation(await self._send(self.wire.observation(env_id)))

    async def close(self, env_id: int) -> bool:
        """Free instance ``env_id`` on the server: ``True``, or ``False`` when the server had
        nothing to close (already closed, reaped, never created)."""
        return bool(await self._send(self.wire.close(env_id)))


def describe(result: ResetResult | StepResult) -> Mapping[str, Any]:
    """A JSON-ready view of a result (for trajectories), without the raw payload."""
    data = dataclasses.asdict(result)
    data.pop("raw", None)
    return data
