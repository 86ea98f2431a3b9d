"""Live environment instances: ids, per-id locks, a cap, idle reaping, where calls run.

AgentGym's servers never evict an instance, so a rollout that dies leaks every instance it
opened until the process (or its JVM) falls over. Here instances are capped
(``max_instances``: 429 beyond), reaped after ``idle_timeout_s`` without a call (their ids
then answer 404 saying so), and calls on one id are serialised by that id's lock while other
ids proceed. Calls of a ``blocking`` family (a JVM, a search) run in a worker thread so the
event loop keeps answering everyone else; fast families run inline, which is quicker.

AgentGym's clients create an instance once and reuse its id for a whole run, with pauses as
long as a training step. So a *reaped* id (unlike one a client closed) is recreated on its next
``/reset``: same id, same family, a fresh env (``recreated`` counts these). A ``/step`` on it
before that reset still answers 404 saying why, since the episode it belonged to is lost.

An action the env cannot parse (``InvalidAction``, or an empty one) is by default a normal step
whose observation is the family's in-game message, as AgentGym's servers answer it: for RL that
message is what the agent learns from. ``strict_actions`` keeps the 422 instead.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import dataclasses
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import anyio.to_thread

from env_servers.envs.base import EnvFamily, InvalidAction, StepResult, TaskOutOfRange, TextEnv
from env_servers.errors import (
    BadAction,
    EpisodeFinished,
    InstanceGone,
    NotReset,
    TaskOutOfRangeError,
    TooManyInstances,
    UnknownInstance,
    UnknownView,
)

__all__ = ["Instance", "InstanceManager"]

T = TypeVar("T")
log = logging.getLogger("env_servers.instances")
_GONE_MEMORY = 100_000  # how many closed ids keep their "why" for the 404 message
_REVIVE_HINT = "; POST /reset with this id recreates it"

# (instance, action, why the env refused it) -> the observation the agent sees instead
InvalidObservation = Callable[["Instance", str, str], str]


@dataclasses.dataclass(eq=False)
class Instance:
    """One environment instance and what the server remembers about it."""

    id: int
    env: TextEnv
    last_used: float
    lock: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)
    users: int = 0  # calls holding or awaiting the lock; the reaper leaves these alone
    closed: str = ""  # why, once closed
    started: bool = False  # a task was given (reset, or TextCraft's custom /create)
    data_idx: int | None = None
    done: bool = False
    reward: float = 0.0
    score: float = 0.0
    observation: str = ""
    reset_info: dict[str, Any] = dataclasses.field(default_factory=dict)


class InstanceManager:
    """Owns every instance of one family for one server process (one event loop)."""

    def __init__(self,
                 family: EnvFamily,
                 max_instances: int = 1024,
                 idle_timeout_s: float = 1800.0,
                 max_action_chars: int = 16384,
                 offload: bool | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 strict_actions: bool = False,
                 invalid_observation: InvalidObservation | None = None) -> None:
        self.family = family
        self.max_instances = max_instances
        self.idle_timeout_s = idle_timeout_s
        self.max_action_chars = max_action_chars
        self.offload = family.blocking if offload is None else offload
        self.clock = clock
        self.strict_actions = strict_actions
        # The family's in-game answer to an unparseable action (routes.py sets AgentGym's);
        # an env's own ``invalid_action_observation(action, reason)`` takes precedence.
        self.invalid_observation = invalid_observation
        self._live: dict[int, Instance] = {}
        self._gone: collections.OrderedDict[int, str] = collections.OrderedDict()
        # reaped ids a /reset may bring back -> the task they last had (SearchQA resets to it)
        self._revivable: collections.OrderedDict[int, int | None] = collections.OrderedDict()
        self._revive_lock = asyncio.Lock()
        self._next_id = 0
        self._pending = 0  # creations in flight, counted against the cap
        self._num_tasks: int | None = None
        self.reaped = 0
        self.recreated = 0  # reaped ids brought back by a /reset
        self.invalid_actions = 0  # unparseable actions answered in-game (not strict)

    # -- running env code -------------------------------------------------------------------

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run env code inline or in a worker thread, turning env errors into API errors."""
        try:
            if self.offload:
                return await anyio.to_thread.run_sync(functools.partial(fn, *args))
            return fn(*args)
        except InvalidAction as exc:
            raise BadAction(str(exc)) from exc
        except TaskOutOfRange as exc:
            raise TaskOutOfRangeError(str(exc)) from exc

    def num_tasks(self) -> int:
        if self._num_tasks is None:
            self._num_tasks = self.family.num_tasks()
        return self._num_tasks

    def check_data_idx(self, data_idx: int) -> None:
        """The family decides (BabyAI and TextCraft wrap large ids as AgentGym does); 422."""
        try:
            self.family.check_data_idx(data_idx)
        except TaskOutOfRange as exc:
            raise TaskOutOfRangeError(str(exc)) from exc

    # -- lifecycle --------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._live)

    async def create(self) -> Instance:
        """A new instance with the next id; 429 when the cap is reached."""
        env = await self._new_env()
        instance = Instance(self._next_id, env, self.clock())
        self._next_id += 1
        self._live[instance.id] = instance
        return instance

    async def _new_env(self) -> TextEnv:
        if len(self._live) + self._pending >= self.max_instances:
            raise TooManyInstances(
                f"the server holds {len(self._live)} {self.family.name} instances, its "
                f"max_instances is {self.max_instances}; close some (POST /close) or wait for "
                f"idle ones to be reaped after {self.idle_timeout_s:g} s")
        self._pending += 1
        try:
            return await self.call(self.family.create)
        finally:
            self._pending -= 1

    async def _revive(self, instance_id: int) -> None:
        """Recreate a reaped id (same id, a fresh env of the family), once however many
        resets on it arrive together."""
        async with self._revive_lock:
            if instance_id in self._live or instance_id not in self._revivable:
                return  # a concurrent reset revived it, or a close forgot it meanwhile
            env = await self._new_env()
            data_idx = self._revivable.pop(instance_id)
            self._gone.pop(instance_id, None)
            self._live[instance_id] = Instance(instance_id, env, self.clock(), data_idx=data_idx)
            self.recreated += 1
            log.info("recreated reaped instance %d for a /reset", instance_id)

    def _lookup(self, instance_id: int) -> Instance:
        instance = self._live.get(instance_id)
        if instance is not None:
            return instance
        if instance_id in self._gone:
            hint = _REVIVE_HINT if instance_id in self._revivable else ""
            raise InstanceGone(f"instance {instance_id} {self._gone[instance_id]}{hint}")
        raise UnknownInstance(f"no instance with id {instance_id}; create one with POST /create "
                              f"(ids so far: 0..{self._next_id - 1})" if self._next_id else
                              f"no instance with id {instance_id}; none was created yet "
                              "(POST /create)")

    @contextlib.asynccontextmanager
    async def use(self, instance_id: int, revive: bool = False) -> AsyncIterator[Instance]:
        """Hold ``instance_id``'s lock: calls on one id run one at a time, in arrival order.

        ``revive`` (the /reset routes): a reaped id is recreated first instead of a 404."""
        if revive and instance_id not in self._live and instance_id in self._revivable:
            await self._revive(instance_id)
        instance = self._lookup(instance_id)
        instance.users += 1
        try:
            async with instance.lock:
                if instance.closed:
                    raise InstanceGone(f"instance {instance_id} {instance.closed}")
                instance.last_used = self.clock()
                try:
                    yield instance
                finally:
                    instance.last_used = self.clock()
        finally:
            instance.users -= 1

    async def close(self, instance_id: int, why: str = "was closed") -> None:
        """Close an instance (after any call in progress on it); its id then answers 404."""
        async with self.use(instance_id) as instance:
            await self._retire(instance, why)

    async def close_if_open(self, instance_id: int) -> bool:
        """A client's ``/close``: ``True`` if it closed a live instance, ``False`` (AgentGym's
        answer) for an id already closed, reaped or never created. A reaped id is then
        forgotten for good: its client said it is done, so no later /reset revives it."""
        self._revivable.pop(instance_id, None)
        try:
            await self.close(instance_id)
        except (UnknownInstance, InstanceGone) as exc:
            log.info("close found nothing to close: %s", exc)
            return False
        return True

    async def _retire(self, instance: Instance, why: str, revivable: bool = False) -> None:
        instance.closed = why
        self._live.pop(instance.id, None)
        self._gone[instance.id] = why
        while len(self._gone) > _GONE_MEMORY:
            self._gone.popitem(last=False)
        if revivable:
            self._revivable[instance.id] = instance.data_idx
            while len(self._revivable) > _GONE_MEMORY:
                self._revivable.popitem(last=False)
        try:
            await self.call(instance.env.close)
        except Exception:  # a broken env must not keep its id alive
            log.exception("closing instance %d failed", instance.id)

    async def close_all(self) -> None:
        for instance in list(self._live.values()):
            await self._retire(instance, "was closed at server shutdown")

    async def reap_idle(self) -> list[int]:
        """Close instances idle longer than ``idle_timeout_s``; their ids."""
        cutoff = self.clock() - self.idle_timeout_s
        idle = [
            i for i in self._live.values()
            if i.last_used < cutoff and i.users == 0 and not i.lock.locked()
        ]
        reaped = []
        for instance in idle:
            if instance.closed or instance.users or instance.last_used >= cutoff:
                continue  # used (or closed) while an earlier one was being closed
            await self._retire(instance,
                               f"was closed after {self.idle_timeout_s:g} s without a call",
                               revivable=True)
            reaped.append(instance.id)
        self.reaped += len(reaped)
        if reaped:
            log.info("reaped %d idle instance(s): %s", len(reaped), reaped)
        return reaped

    async def run_reaper(self, interval_s: float) -> None:
        """Reap forever, every ``interval_s`` seconds (the app's background task)."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.reap_idle()
            except Exception:  # keep reaping whatever one close did
                log.exception("reaping idle instances failed")

    # -- the environment calls every wire format shares ------------------------------------

    async def reset(self, instance_id: int, data_idx: int) -> Instance:
        self.check_data_idx(data_idx)
        async with self.use(instance_id, revive=True) as instance:
            await self.begin(instance, data_idx, instance.env.reset, data_idx)
            return instance

    async def begin(self, instance: Instance, data_idx: int | None, start: Callable[..., str],
                    *args: Any) -> None:
        """Start a task on an instance whose lock is held; ``start`` gives the observation."""
        instance.observation = await self.call(start, *args)
        instance.reset_info = await self.call(_reset_info, instance.env)
        instance.started, instance.data_idx = True, data_idx
        instance.done, instance.reward, instance.score = False, 0.0, 0.0

    async def step(self, instance_id: int, action: str) -> tuple[Instance, StepResult]:
        """Apply ``action``; an unparseable one is an in-game answer unless ``strict_actions``
        (``result.info["invalid_action"]`` marks it). Over ``max_action_chars`` is always 422:
        that is the server's limit, not the game's grammar."""
        empty = not action.strip()
        if empty and self.strict_actions:
            raise BadAction("action is empty (or only whitespace)")
        if len(action) > self.max_action_chars:
            raise BadAction(f"action is {len(action)} characters long; this server takes at "
                            f"most max_action_chars={self.max_action_chars}")
        async with self.use(instance_id) as instance:
            self.require_reset(instance)
            if instance.done:
                raise EpisodeFinished(f"instance {instance_id} finished its episode (task "
                                      f"{instance.data_idx}); reset it before stepping")
            try:
                if empty:
                    raise BadAction("action is empty (or only whitespace)")
                result = await self.call(instance.env.step, action)
            except BadAction as exc:
                if self.strict_actions:
                    raise
                result = await self._invalid_step(instance, action, str(exc))
            instance.observation = result.observation
            instance.done, instance.reward, instance.score = (result.done, result.reward,
                                                              result.score)
            return instance, result

    async def _invalid_step(self, instance: Instance, action: str, reason: str) -> StepResult:
        """The in-game answer to an action the env refused: nothing changes in the world."""
        if _overrides(instance.env, "invalid_action_observation"):
            observation = str(await self.call(instance.env.invalid_action_observation, action,
                                              reason))
        elif self.invalid_observation is not None:
            observation = self.invalid_observation(instance, action, reason)
        else:
            observation = reason
        self.invalid_actions += 1
        log.debug("instance %d: invalid action %r answered in-game (%s)", instance.id, action[:80],
                  reason)
        return StepResult(observation, 0.0, False, instance.score, {
            "invalid_action": True,
            "reason": reason
        })

    def require_reset(self, instance: Instance) -> None:
        if not instance.started:
            raise NotReset(f"instance {instance.id} has no task yet; POST /reset with a "
                           "data_idx first")

    async def observe(self, instance_id: int) -> Instance:
        async with self.use(instance_id) as instance:
            self.require_reset(instance)
            instance.observation = await self.call(instance.env.observation)
            return instance

    async def extra(self, instance_id: int, name: str) -> Any:
        """A family-specific read-only view (``TextEnv.extras``), e.g. TextCraft's goal."""
        async with self.use(instance_id) as instance:
            self.require_reset(instance)
            view = instance.env.extras().get(name)
            if view is None:
                raise UnknownView(f"{self.family.name} instances offer no {name!r} view")
            return await self.call(view)

    async def render(self, instance_id: int) -> Any:
        """The env's picture (AgentGym's BabyAI ``/render``: a ``data:image/png;base64,`` URL)
        from its ``render()``; ``UnknownView`` when the family draws none."""
        async with self.use(instance_id) as instance:
            self.require_reset(instance)
            draw = getattr(instance.env, "render", None)
            if not callable(draw):
                raise UnknownView(f"{self.family.name} instances cannot render: only families "
                                  "whose env has a render() method (babyai) answer POST /render")
            try:
                picture = await self.call(draw)
            except NotImplementedError as exc:
                raise UnknownView(f"{self.family.name} instances cannot render: {exc}") from exc
            if isinstance(picture, bytes | bytearray):  # PNG bytes: AgentGym's data URL
                return "data:image/png;base64," + base64.b64encode(picture).decode("ascii")
            return picture


def _overrides(env: TextEnv, method: str) -> bool:
    """Whether ``env``'s class gives its own ``method`` (the base's default is a fallback that
    the family's wording in routes.py beats)."""
    own = getattr(type(env), method, None)
    return callable(own) and own is not getattr(TextEnv, method, None)


def _reset_info(env: TextEnv) -> dict[str, Any]:
    getter = getattr(env, "reset_info", None)
    return dict(getter()) if callable(getter) else {}
