"""ScienceWorld family on real JVMs: AgentGym's task numbering, an episode to full score, the
lean step against ScienceWorld's own, and supervision (a killed or hung JVM is replaced with
a clear error, a pool that reuses, caps and recycles JVMs, no java process left behind)."""

from __future__ import annotations

import itertools
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from env_servers.envs.base import InvalidAction, TaskOutOfRange
from env_servers.envs.sciworld import (
    AGENTGYM_EXCLUDED,
    EnvCrashed,
    JvmLimitReached,
    JvmStartError,
    SciWorldFamily,
    SciWorldTask,
    step_scienceworld,
)

# find-living-thing, variation 0: ScienceWorld's gold path (generateGoldPath=True), 100 points
GOLD = [
    "open door to kitchen", "go to kitchen", "open door to outside", "go to outside", "look around",
    "focus on blue jay", "pick up blue jay", "open door to kitchen", "go to kitchen",
    "move egg blue jay egg in inventory to red box"
]


def java_children() -> set[int]:
    """Live ``java`` processes whose parent is this test process (zombies count as gone)."""
    out = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        comm = text[text.index("(") + 1:text.rindex(")")]
        state, ppid = text[text.rindex(")") + 2:].split()[:2]
        if comm == "java" and int(ppid) == os.getpid() and state != "Z":
            out.add(int(stat.parent.name))
    return out


def gone(pid: int) -> bool:
    return pid not in java_children()


@pytest.fixture(scope="module")
def fam() -> Iterator[SciWorldFamily]:
    family = SciWorldFamily(call_timeout_s=30.0)
    yield family
    pids = family.jvm_pids()
    family.close()
    assert all(gone(p) for p in pids)


def index_of(family: SciWorldFamily, task: SciWorldTask) -> int:
    return next(i for i in range(family.num_tasks()) if family.task(i) == task)


def test_numbering_follows_agentgym(fam: SciWorldFamily) -> None:
    tasks = [fam.task(i) for i in range(fam.num_tasks())]
    assert fam.num_tasks() == 4639  # scienceworld 1.2.3: 7,207 variations less 7 tasks
    assert tasks[0] == SciWorldTask("1-1", "boil", 0)
    assert not {t.task_id for t in tasks} & AGENTGYM_EXCLUDED
    assert len({t.task_id for t in tasks}) == 30 - len(AGENTGYM_EXCLUDED)
    for a, b in itertools.pairwise(tasks):  # variations counted up within each task
        assert b.variation == (a.variation + 1 if b.task_id == a.task_id else 0)
    for bad in (-1, fam.num_tasks()):
        with pytest.raises(TaskOutOfRange):
            fam.create().reset(bad)


def test_episode_to_full_score(fam: SciWorldFamily) -> None:
    env = fam.create()
    try:
        with pytest.raises(InvalidAction):
            env.step("look around")  # nothing loaded yet
        first = env.reset(index_of(fam, SciWorldTask("4-1", "find-living-thing", 0)))
        assert first.startswith("Your task is to find a(n) living thing")
        assert "This room is called" in first
        look = env.step("look around")
        assert "This room is called" in look.observation and not look.done
        for nonsense in ("xyzzy plugh", "", "open"):  # ScienceWorld answers, never refuses
            r = env.step(nonsense)
            assert r.observation == "No known action matches that input."
            assert (r.reward, r.done, r.score) == (0.0, False, 0.0)
        rewards = [env.step(a) for a in GOLD]
        assert rewards[-1].done and rewards[-1].score == 100.0
        assert sum(r.reward for r in rewards) == 100.0
        assert [r.done for r in rewards[:-1]] == [False] * 9
        detail = env.extras()["detail"]()
        assert (detail["task_name"], detail["var_num"], detail["score"],
                detail["done"]) == ("find-living-thing", 0, 100, True)
        assert env.observation() == rewards[-1].observation
        with pytest.raises(InvalidAction, match="finished"):
            env.step("look around")
        hint = env.extras()["action_hint"]()
        assert "look around" in hint["possible_actions"] and hint["possible_objects"]
        assert "Sequential Subgoals" in env.extras()["goals"]()["goals"]
        assert env.extras()["task_description"]() == {
            "task_description": detail["task_description"]
        }
        assert env.extras()["object_tree"]()["object_tree"]
        state = env.extras()["state"]()
        assert state["current_moves"] == rewards[-1].info["moves"] > 0
        assert "This room is called the kitchen" in state["observation"]  # where GOLD ends
        assert state["environment_info"]["score"] == 100
    finally:
        env.close()


def test_lean_step_matches_scienceworld(fam: SciWorldFamily) -> None:
    """Our step skips ScienceWorldEnv.step's info dict; the rest must be identical."""
    env = fam.create()
    try:
        idx = index_of(fam, SciWorldTask("4-1", "find-living-thing", 0))
        env.reset(idx)
        actions = ["look around", "nonsense", *GOLD]
        ours = [env.step(a) for a in actions]
        sw = env._jvm.env  # type: ignore[union-attr]  # the instance's ScienceWorldEnv
        sw.load("find-living-thing", 0, "")
        sw.step("look around")  # what reset does
        for a, mine in zip(actions, ours, strict=True):
            obs, reward, done, info = sw.step(a)
            assert (mine.observation, mine.reward, mine.done, mine.score) == (obs, reward, done,
                                                                              info["score"]), a
        sw.load("boil", 0, "")  # the function itself, on a fresh load
        out = step_scienceworld(sw, "look around", 0, fam.env_step_limit)
        assert "This room is called" in out.observation and out.moves == 0
    finally:
        env.close()


def test_killed_jvm_is_replaced_with_a_clear_error(fam: SciWorldFamily) -> None:
    env = fam.create()
    try:
        env.reset(0)
        old = env.pid
        assert old is not None and old in java_children()
        os.kill(old, signal.SIGKILL)
        start = time.monotonic()
        with pytest.raises(EnvCrashed, match=rf"pid {old}.*reset the instance"):
            env.step("look around")
        assert time.monotonic() - start < 15
        assert env.pid not in (None, old) and gone(old) and old not in fam.jvm_pids()
        assert "This room is called" in env.reset(1)
        assert env.step("look around").observation.startswith("This room is called")
        # killed between episodes: reset swaps the JVM silently, nothing was lost
        before = env.pid
        assert before is not None
        os.kill(before, signal.SIGKILL)
        time.sleep(0.2)
        env.reset(2)
        assert env.pid != before and gone(before)
    finally:
        env.close()


def test_hung_jvm_is_killed_not_waited_for(fam: SciWorldFamily,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    env = fam.create()
    try:
        env.reset(0)
        old = env.pid
        assert old is not None
        monkeypatch.setattr(fam, "call_timeout_s", 2.0)
        os.kill(old, signal.SIGSTOP)  # alive but silent
        start = time.monotonic()
        with pytest.raises(EnvCrashed, match="did not answer within 2 s"):
            env.step("look around")
        assert time.monotonic() - start < 10
        assert gone(old) and env.pid != old
        monkeypatch.undo()
        env.reset(0)
        assert not env.step("look around").done
    finally:
        env.close()


def test_pool_reuses_caps_recycles_and_closes(fam: SciWorldFamily) -> None:
    own = SciWorldFamily(max_jvms=1, max_idle=1, recycle_after=2, call_timeout_s=30.0)
    seen: set[int] = set()
    try:
        a = own.create()
        pid = a.pid
        assert pid is not None
        seen.add(pid)
        with pytest.raises(JvmLimitReached):
            own.create()
        a.close()
        b = own.create()
        assert b.pid == pid  # the warm JVM came back from the pool
        b.reset(0)
        b.reset(0)
        assert b.pid == pid
        b.reset(0)  # third episode on a JVM with recycle_after=2: a fresh one
        assert b.pid not in (None, pid) and gone(pid)
        seen.update(own.jvm_pids())
        assert not b.step("look around").done
    finally:
        own.close()
    assert own.jvm_pids() == []
    assert not java_children() & seen
    assert java_children() <= set(fam.jvm_pids())  # only the module family's JVMs remain
    with pytest.raises(RuntimeError, match="closed"):
        own.create()


def test_missing_java_is_a_clear_start_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("JAVA_HOME", raising=False)
    with pytest.raises(JvmStartError, match="Java 17"):
        SciWorldFamily()
