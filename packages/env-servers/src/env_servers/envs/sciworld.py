"""ScienceWorld (Wang et al., 2022) as an environment family, with supervised JVMs.

ScienceWorld is a Scala simulator driven through py4j: every ``ScienceWorldEnv`` launches its
own ``java`` process. AgentGym keeps one JVM per instance for ever, never checks it, and a JVM
that dies hours into RL leaves calls failing or hanging (WooooDyy/AgentGym#62). Here a
bounded :class:`JvmPool` owns every JVM the family starts:

* one JVM serves one instance at a time; a closed instance's healthy JVM goes back to the
  pool (``max_idle``) so the next ``create()`` skips the ~1.5 s start;
* at most ``max_jvms`` exist at once (``JvmLimitReached`` beyond that, instead of the machine
  running out of memory at ~150-500 MB per JVM);
* every call to a JVM runs under a watchdog (``call_timeout_s``): a JVM that hangs is killed;
  a JVM that died (killed, crashed, hung) is replaced at once and the call in flight raises
  :class:`EnvCrashed` (the episode is lost; reset again) instead of hanging;
* a JVM is recycled after ``recycle_after`` episodes, so slow leaks never add up;
* ``close()`` stops every JVM and reaps it (no orphan ``java``). Should the server process
  itself die, py4j's ``--die-on-broken-pipe`` ends the JVMs when their stdin closes.

Tasks follow AgentGym's numbering: ScienceWorld's 30 tasks in ``tasks.json`` order, less the
seven AgentGym leaves out (``AGENTGYM_EXCLUDED``), each expanded into its variations
``0 .. max - 1``. With scienceworld 1.2.3 that is 4,639 tasks (7,207 with no exclusions).

ScienceWorld never rejects an action: unknown or empty text gets the observation "No known
action matches that input." and, as in AgentGym, that is returned as a normal step. Only a
Java exception raised by the simulator becomes :class:`InvalidAction`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, TypeVar

from py4j.protocol import Py4JError, Py4JJavaError

from env_servers.envs.base import EnvFamily, InvalidAction, StepResult, TaskOutOfRange, TextEnv

__all__ = [
    "AGENTGYM_EXCLUDED",
    "EnvCrashed",
    "JvmLimitReached",
    "JvmPool",
    "JvmStartError",
    "SciWorldFamily",
    "SciWorldInstance",
    "SciWorldTask",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

# Task ids AgentGym's server leaves out of its ``data_idx`` numbering.
AGENTGYM_EXCLUDED = frozenset({"5-1", "5-2", "9-1", "9-2", "9-3", "10-1", "10-2"})


class EnvCrashed(RuntimeError):
    """The instance's JVM died or hung during a call. A fresh JVM already replaced it, but the
    episode is lost: the client must reset. A server error (5xx), not the client's fault."""


class JvmStartError(RuntimeError):
    """A JVM could not be started (no ``java`` on PATH, Java too old, out of memory)."""


class JvmLimitReached(RuntimeError):
    """``max_jvms`` JVMs are already running; close instances before creating more."""


@dataclasses.dataclass(frozen=True)
class SciWorldTask:
    """What a ``data_idx`` names."""

    task_id: str  # "1-1"
    task_name: str  # "boil"
    variation: int


class _Jvm:
    """One ScienceWorld JVM: the py4j wrapper, its ``java`` process and a use count."""

    def __init__(self, env_step_limit: int) -> None:
        from scienceworld import ScienceWorldEnv  # starts nothing at import; keeps import cheap

        if shutil.which("java") is None:  # py4j runs ``java`` from PATH
            raise JvmStartError("no `java` on PATH: ScienceWorld needs Java 17 "
                                "(e.g. apt-get install default-jre-headless)")
        try:
            self.env = ScienceWorldEnv("", envStepLimit=env_step_limit)
        except Exception as e:  # FileNotFoundError (no java), Py4JError (gateway), ...
            raise JvmStartError(f"could not start a ScienceWorld JVM (needs Java 17): {e}") from e
        self.proc: subprocess.Popen[bytes] = self.env._gateway.java_process
        self.episodes = 0  # resets served, for recycling
        self.killed_by_watchdog = False

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def call(self, fn: Callable[[], T], timeout_s: float) -> T:
        """Run ``fn`` (py4j calls on this JVM) under a watchdog: past ``timeout_s`` the JVM is
        killed, which makes the blocked socket read fail instead of waiting for ever."""
        timer = threading.Timer(timeout_s, self._kill_hung)
        timer.daemon = True
        timer.start()
        try:
            return fn()
        finally:
            timer.cancel()

    def _kill_hung(self) -> None:
        self.killed_by_watchdog = True
        self.kill()

    def kill(self) -> None:
        if self.alive():
            self.proc.kill()

    def shutdown(self, grace_s: float = 5.0, force: bool = False) -> None:
        """Stop the JVM and reap it: politely (gateway shutdown, killed after ``grace_s``), or
        at once with ``force`` (a JVM that is dead, hung or no longer trusted)."""
        if force:
            self.kill()  # not the gateway: a dying JVM would only log connection errors
        elif self.alive():
            try:
                self.env.close()  # gateway shutdown + newline on stdin: the JVM exits
            except Exception:  # a broken gateway; the kill below covers it
                log.debug("gateway shutdown failed for JVM %d", self.pid, exc_info=True)
        try:
            self.proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        # The JVM is gone: mark py4j's client disconnected, or every Java proxy it finalises
        # later (and ScienceWorldEnv.__del__) tries to reconnect and logs a traceback.
        gateway = self.env._gateway
        gateway._gateway_client.is_connected = False
        try:
            gateway.shutdown_callback_server()
            gateway._gateway_client.close()
        except Exception:
            log.debug("py4j cleanup failed for JVM %d", self.pid, exc_info=True)
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError):  # unflushed bytes to a dead process
                    pipe.close()


class JvmPool:
    """Starts, lends, takes back and stops JVMs; at most ``max_jvms`` alive. Thread-safe: the
    lock guards only the bookkeeping, never a JVM start or stop (seconds)."""

    def __init__(self, max_jvms: int, max_idle: int, env_step_limit: int) -> None:
        if max_jvms < 1:
            raise ValueError("max_jvms must be >= 1")
        self.max_jvms = max_jvms
        self.max_idle = max_idle
        self._step_limit = env_step_limit
        self._lock = threading.Lock()
        self._idle: list[_Jvm] = []
        self._all: set[_Jvm] = set()
        self._starting = 0
        self._closed = False

    def acquire(self) -> _Jvm:
        """A healthy JVM: an idle one if any, else a new one (``JvmLimitReached`` at the cap)."""
        dead: list[_Jvm] = []
        try:
            with self._lock:
                if self._closed:
                    raise RuntimeError("the ScienceWorld family is closed")
                while self._idle:
                    jvm = self._idle.pop()
                    if jvm.alive():
                        return jvm
                    self._all.discard(jvm)
                    dead.append(jvm)
                if len(self._all) + self._starting >= self.max_jvms:
                    raise JvmLimitReached(
                        f"{self.max_jvms} ScienceWorld JVMs are running (max_jvms); "
                        "close instances first")
                self._starting += 1
        finally:
            for jvm in dead:
                jvm.shutdown(force=True)
        try:
            jvm = _Jvm(self._step_limit)
        finally:
            with self._lock:
                self._starting -= 1
        with self._lock:
            if not self._closed:
                self._all.add(jvm)
                return jvm
        jvm.shutdown()  # the family closed while this one was starting
        raise RuntimeError("the ScienceWorld family is closed")

    def release(self, jvm: _Jvm) -> None:
        """Take a JVM back: kept idle if healthy and there is room, else stopped."""
        with self._lock:
            keep = not self._closed and jvm.alive() and len(self._idle) < self.max_idle
            if keep:
                self._idle.append(jvm)
            else:
                self._all.discard(jvm)
        if not keep:
            jvm.shutdown()

    def discard(self, jvm: _Jvm) -> None:
        """Stop a JVM that must not be reused (dead, hung or worn out)."""
        with self._lock:
            self._all.discard(jvm)
        jvm.shutdown(force=True)

    def pids(self) -> list[int]:
        """Process ids of the JVMs alive now (leased and idle)."""
        with self._lock:
            return sorted(j.pid for j in self._all if j.alive())

    def close(self) -> None:
        """Stop every JVM, leased ones included; later ``acquire`` calls fail."""
        with self._lock:
            self._closed = True
            jvms = list(self._all)
            self._all.clear()
            self._idle.clear()
        for jvm in jvms:
            jvm.shutdown()


@dataclasses.dataclass
class _Outcome:
    observation: str
    reward: int
    score: int
    done: bool
    moves: int


def step_scienceworld(env: Any, action: str, last_score: int, step_limit: int) -> _Outcome:
    """One step with ``ScienceWorldEnv.step``'s reward/score/done rules, minus the info dict
    it builds on every call (valid action-object combinations: ~20x the step itself)."""
    server = env.server
    observation = str(server.step(action))
    score = round(100 * float(server.getScore()))  # 0..100, negative when a task is failed
    moves = int(server.getNumMoves())
    done = bool(server.getCompleted()) or moves > step_limit or score < 0
    return _Outcome(observation, score - last_score, score, done, moves)


class SciWorldInstance(TextEnv):
    """One ScienceWorld instance on a JVM leased from the family's pool."""

    def __init__(self, family: SciWorldFamily) -> None:
        self._family = family
        self._jvm: _Jvm | None = family.pool.acquire()
        self._task: SciWorldTask | None = None
        self._last_score = 0
        self._done = False
        self._info: dict[str, Any] = {"deleted": False, "done": False}

    @property
    def pid(self) -> int | None:
        """The ``java`` process serving this instance now (for operators and tests)."""
        return self._jvm.pid if self._jvm is not None else None

    # -- the JVM, guarded ------------------------------------------------------------------

    def _jvm_for_call(self) -> _Jvm:
        if self._jvm is None:  # a replacement failed earlier, or the instance is closed
            self._jvm = self._family.pool.acquire()
        return self._jvm

    def _guarded(self, what: str, fn: Callable[[Any], T]) -> T:
        """Run ``fn(scienceworld_env)``; a dead or hung JVM is replaced and ``EnvCrashed``
        raised. Java-side exceptions (a live JVM refusing a call) pass through."""
        jvm = self._jvm_for_call()
        if not jvm.alive():
            raise self._replace(jvm, what, "was found dead")
        try:
            result = jvm.call(lambda: fn(jvm.env), self._family.call_timeout_s)
        except Py4JJavaError:
            if jvm.alive():
                raise
            raise self._replace(jvm, what, "died") from None
        except Py4JError as e:  # network errors: the gateway is gone or unusable
            reason = (f"did not answer within {self._family.call_timeout_s:g} s and was killed"
                      if jvm.killed_by_watchdog else f"stopped answering ({e.__class__.__name__})")
            raise self._replace(jvm, what, reason) from e
        if jvm.killed_by_watchdog:  # answered, but just as the watchdog fired
            raise self._replace(jvm, what, "was killed by the watchdog")
        return result

    def _replace(self, old: _Jvm, what: str, reason: str) -> EnvCrashed:
        """Swap in a fresh JVM for a broken one; the error to raise for the call in flight."""
        self._jvm = None
        self._task = None
        self._done = False
        self._family.pool.discard(old)
        message = f"ScienceWorld JVM (pid {old.pid}) {reason} during {what}"
        log.warning("%s; replacing it", message)
        try:
            self._jvm = self._family.pool.acquire()
        except Exception as e:
            return EnvCrashed(f"{message}; starting a new JVM failed too: {e}")
        return EnvCrashed(f"{message}; a new JVM (pid {self._jvm.pid}) replaced it. "
                          "The episode is lost: reset the instance.")

    def _require_task(self) -> SciWorldTask:
        if self._task is None:
            raise InvalidAction("the instance has no task loaded: reset it first")
        return self._task

    # -- TextEnv ---------------------------------------------------------------------------

    def reset(self, data_idx: int) -> str:
        """Load task ``data_idx`` and look around, as AgentGym does; the answer is the task
        description, a newline, then the room (what AgentGym's client shows the agent)."""
        task = self._family.task(data_idx)
        jvm = self._jvm_for_call()
        if not jvm.alive() or jvm.episodes >= self._family.recycle_after:
            self._family.pool.discard(jvm)  # nothing to lose yet: swap silently
            self._jvm = None
            jvm = self._jvm_for_call()
        self._task = None
        step_limit = self._family.env_step_limit
        simplifications = self._family.simplifications

        def load(env: Any) -> tuple[str, _Outcome]:
            env.load(task.task_name, task.variation, simplifications)
            return str(env.get_task_description()), step_scienceworld(env, "look around", 0,
                                                                      step_limit)

        description, first = self._guarded(f"reset({data_idx})", load)
        jvm.episodes += 1
        self._task = task
        self._last_score = first.score
        self._done = first.done
        self._info = {
            "task_name": task.task_name,
            "var_num": task.variation,
            "task_description": description,
            "observation": first.observation,
            "reward": first.reward,
            "score": first.score,
            "deleted": False,
            "done": first.done,
        }
        return f"{description}\n{first.observation}"

    def step(self, action: str) -> StepResult:
        """Any text is a move; ScienceWorld answers what it cannot parse in the observation.
        ``reward`` is the score's change, ``score`` the task progress 0..100 (AgentGym's)."""
        task = self._require_task()
        if self._done:
            raise InvalidAction("the episode has finished: reset the instance")
        step_limit = self._family.env_step_limit
        last = self._last_score
        try:
            out = self._guarded("step",
                                lambda env: step_scienceworld(env, action, last, step_limit))
        except Py4JJavaError as e:
            raise InvalidAction(f"ScienceWorld rejected {action!r}: {_java_message(e)}") from e
        self._last_score = out.score
        self._done = out.done
        self._info.update(observation=out.observation,
                          reward=out.reward,
                          score=out.score,
                          done=out.done)
        return StepResult(
            observation=out.observation,
            reward=float(out.reward),
            done=out.done,
            score=float(out.score),
            info={
                "moves": out.moves,
                "task_name": task.task_name,
                "var_num": task.variation
            },
        )

    def observation(self) -> str:
        """The last step's observation (AgentGym's ``/observation``)."""
        self._require_task()
        return str(self._info["observation"])

    def extras(self) -> dict[str, Callable[[], Any]]:
        """AgentGym's ``/action_hint``, ``/goals`` and ``/detail`` (the latter also carries
        the fields of AgentGym's ``/reset`` answer: task_name, var_num, task_description), and
        the newer fork's visualisation views ``/task_description``, ``/object_tree``,
        ``/state``. All but ``detail`` ask the JVM (guarded like a step)."""
        return {
            "action_hint": self._action_hint,
            "goals": self._goals,
            "detail": lambda: dict(self._info),
            "task_description": self._task_description,
            "object_tree": self._object_tree,
            "state": self._state,
        }

    def _action_hint(self) -> dict[str, list[str]]:
        self._require_task()
        return self._guarded(
            "action_hint", lambda env: {
                "possible_actions": list(env.get_possible_actions()),
                "possible_objects": list(env.get_possible_objects()),
            })

    def _goals(self) -> dict[str, str]:
        self._require_task()
        return self._guarded("goals", lambda env: {"goals": str(env.get_goal_progress())})

    def _task_description(self) -> dict[str, str]:
        self._require_task()
        return self._guarded("task_description",
                             lambda env: {"task_description": str(env.get_task_description())})

    def _object_tree(self) -> dict[str, Any]:
        self._require_task()
        return self._guarded("object_tree", lambda env: {"object_tree": env.getObjectTree()})

    def _state(self) -> dict[str, Any]:
        """A snapshot without taking a turn: look, inventory, goals, moves."""
        self._require_task()
        info = dict(self._info)

        def read(env: Any) -> dict[str, Any]:
            return {
                "observation": str(env.look()),
                "inventory": str(env.inventory()),
                "task_description": str(env.get_task_description()),
                "goal_progress": str(env.get_goal_progress()),
                "possible_actions": list(env.get_possible_actions())[:10],
                "possible_objects": list(env.get_possible_objects())[:10],
                "current_moves": int(env.get_num_moves()),
                "environment_info": info,
            }

        return self._guarded("state", read)

    def close(self) -> None:
        """Hand the JVM back to the pool (kept warm if healthy)."""
        jvm, self._jvm = self._jvm, None
        self._task = None
        self._info["deleted"] = True
        if jvm is not None:
            self._family.pool.release(jvm)


def _java_message(e: Py4JJavaError) -> str:
    """The Java exception's first line, without py4j's boilerplate."""
    try:
        return str(e.java_exception.toString())
    except Exception:
        return str(e).splitlines()[-1]


class SciWorldFamily(EnvFamily):
    """ScienceWorld tasks × variations behind a pool of supervised JVMs.

    Options: ``max_jvms`` (JVMs alive at once, i.e. concurrent instances), ``max_idle``
    (healthy JVMs kept warm for the next ``create``), ``call_timeout_s`` (a call slower than
    this kills its JVM), ``recycle_after`` (episodes before a JVM is replaced),
    ``env_step_limit`` (ScienceWorld's own move limit; AgentGym's default 100),
    ``simplifications`` (e.g. ``"easy"``; AgentGym uses none), ``exclude_tasks`` (task ids
    left out of the numbering; AgentGym's by default, which ``num_tasks`` depends on).

    Construction starts one JVM (to read the variation counts) and keeps it for the first
    instance. The JVM's heap follows Java's default (a quarter of RAM as the ceiling); set
    ``JAVA_TOOL_OPTIONS=-Xmx1g`` in the server's environment to cap it.
    """

    name: ClassVar[str] = "sciworld"
    blocking: ClassVar[bool] = True

    def __init__(
        self,
        *,
        max_jvms: int = 32,
        max_idle: int = 4,
        call_timeout_s: float = 120.0,
        recycle_after: int = 500,
        env_step_limit: int = 100,
        simplifications: str = "",
        exclude_tasks: Iterable[str] = AGENTGYM_EXCLUDED,
    ) -> None:
        if recycle_after < 1 or call_timeout_s <= 0:
            raise ValueError("recycle_after must be >= 1 and call_timeout_s > 0")
        self.call_timeout_s = call_timeout_s
        self.recycle_after = recycle_after
        self.env_step_limit = env_step_limit
        self.simplifications = simplifications
        self.pool = JvmPool(max_jvms, max_idle, env_step_limit)
        jvm = self.pool.acquire()
        try:
            self._tasks = _enumerate_tasks(jvm, frozenset(exclude_tasks), call_timeout_s)
        except BaseException:
            self.pool.close()
            raise
        self.pool.release(jvm)

    def num_tasks(self) -> int:
        return len(self._tasks)

    def task(self, data_idx: int) -> SciWorldTask:
        """The (task, variation) that ``data_idx`` names."""
        if not 0 <= data_idx < len(self._tasks):
            raise TaskOutOfRange(f"data_idx {data_idx} is outside 0..{len(self._tasks) - 1}")
        return self._tasks[data_idx]

    def create(self) -> SciWorldInstance:
        return SciWorldInstance(self)

    def jvm_pids(self) -> list[int]:
        """The ``java`` processes this family runs now."""
        return self.pool.pids()

    def close(self) -> None:
        self.pool.close()


def _enumerate_tasks(jvm: _Jvm, exclude: frozenset[str], timeout_s: float) -> list[SciWorldTask]:
    """Tasks in ``tasks.json`` order, each with variations ``0 .. max - 1``."""

    def read(env: Any) -> list[SciWorldTask]:
        out: list[SciWorldTask] = []
        for task_id, task_name in env.tasks.items():
            if task_id not in exclude:
                n = int(env.get_max_variations(task_name))
                out.extend(SciWorldTask(task_id, task_name, v) for v in range(n))
        return out

    return jvm.call(lambda: read(jvm.env), timeout_s)
