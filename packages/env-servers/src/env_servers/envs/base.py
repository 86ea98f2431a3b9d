"""What an environment family gives the server: instances that reset to a numbered task,
take text actions and describe themselves. Wire formats, ids, locking and limits are the
server's job (``app.py``, ``instances.py``), so a family holds only environment logic."""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar

__all__ = ["EnvFamily", "InvalidAction", "StepResult", "TaskOutOfRange", "TextEnv"]


@dataclasses.dataclass
class StepResult:
    """One step's outcome, before the server shapes it into a family's response."""

    observation: str
    reward: float
    done: bool
    score: float = 0.0  # the task's progress or success so far, as AgentGym reports it
    info: dict[str, Any] = dataclasses.field(default_factory=dict)


class InvalidAction(ValueError):
    """An action the environment does not understand. A strict server answers 422 with its
    message; by default the server answers in-game with ``TextEnv.invalid_action_observation``."""


class TaskOutOfRange(IndexError):
    """A ``data_idx`` the family cannot start (``EnvFamily.check_data_idx``); the server
    answers 4xx with it."""


class TextEnv(abc.ABC):
    """One instance. Not thread-safe: the server serialises the calls on one id."""

    @abc.abstractmethod
    def reset(self, data_idx: int) -> str:
        """Start task ``data_idx``; the first observation."""

    @abc.abstractmethod
    def step(self, action: str) -> StepResult:
        """Apply a text action; raise ``InvalidAction`` for one the env cannot parse."""

    @abc.abstractmethod
    def observation(self) -> str:
        """The current observation (what the agent sees now)."""

    def invalid_action_observation(self, action: str, reason: str) -> str:
        """The in-game answer to ``action`` after ``step(action)`` raised ``InvalidAction``
        with ``reason`` (or the action was empty): what the agent reads instead of an HTTP
        error, because for RL that message is the signal it learns from, and AgentGym's
        clients die on a non-200.

        Contract: call it only instead of a ``step`` that refused the action; it changes no
        game state, makes the returned text the current ``observation()`` where the family
        shows the last message there (BabyAI, TextCraft), and the step it answers has reward
        0, is not done and leaves the score as it was. Families return AgentGym's wording;
        this default returns ``reason``."""
        return reason

    def reset_info(self) -> dict[str, Any]:
        """Fields the family's ``/reset`` answer carries beside the observation, read right
        after ``reset`` (ScienceWorld's ``task_name``, ``var_num``, ``task_description``)."""
        return {}

    def extras(self) -> dict[str, Callable[[], Any]]:
        """Family-specific read-only views (``GET /<name>?id=``), e.g. TextCraft's goal."""
        return {}

    def close(self) -> None:
        """Free what the instance holds (a JVM handle, a game); nothing by default."""
        return None


class EnvFamily(abc.ABC):
    """A kind of environment served by one process (``env-servers serve --env NAME``)."""

    name: ClassVar[str]
    blocking: ClassVar[bool] = False  # True: calls can take long (a JVM, a search) -> threads

    @abc.abstractmethod
    def num_tasks(self) -> int:
        """How many tasks the family lists, ``data_idx`` 0 .. n - 1 (fixed, so splits are
        reproducible); ``check_data_idx`` says which ids ``reset`` takes beyond."""

    def check_data_idx(self, data_idx: int) -> None:
        """Raise ``TaskOutOfRange`` (naming the accepted ids) unless ``reset(data_idx)`` can
        start a task. Default: ``0 .. num_tasks() - 1``; families whose AgentGym server wraps
        larger ids (BabyAI, TextCraft) accept every ``data_idx >= 0``."""
        if not 0 <= data_idx < self.num_tasks():
            raise TaskOutOfRange(f"data_idx {data_idx} is out of range: {self.name} has task ids "
                                 f"0..{self.num_tasks() - 1}")

    @abc.abstractmethod
    def create(self) -> TextEnv:
        """A new, not yet reset, instance."""

    def close(self) -> None:
        """Release shared resources (a JVM pool, a search index) at shutdown."""
        return None
