"""Errors the server answers with a 4xx status and a message naming the problem.

AgentGym's servers answer HTTP 200 with ``{"error": ...}`` and clients read that as a silent
score of 0; here every failure is a real status code with ``{"detail": "<message>"}``.
"""

from __future__ import annotations

__all__ = [
    "ApiError", "BadAction", "EpisodeFinished", "InstanceGone", "NotReset", "TaskOutOfRangeError",
    "TooManyInstances", "UnknownInstance", "UnknownView"
]


class ApiError(Exception):
    """An error with the HTTP status it maps to; ``str(exc)`` is the message clients see."""

    status: int = 400


class UnknownInstance(ApiError):
    """An id the server never created."""

    status = 404


class InstanceGone(ApiError):
    """An id that was closed by a client or reaped after idling."""

    status = 404


class TooManyInstances(ApiError):
    """Creating one more instance would pass ``max_instances``."""

    status = 429


class NotReset(ApiError):
    """A step or observation on an instance that has no task yet."""

    status = 409


class EpisodeFinished(ApiError):
    """A step after the episode ended; the client must reset first."""

    status = 409


class BadAction(ApiError):
    """An action the environment cannot parse (empty, too long, outside its grammar)."""

    status = 422


class TaskOutOfRangeError(ApiError):
    """A ``data_idx`` outside the family's task ids."""

    status = 422


class UnknownView(ApiError):
    """A family-specific view (``GET /<name>``) this family's instances do not offer."""

    status = 404
