"""Environment look-ups shared by trainers and evaluation."""

from __future__ import annotations

import difflib

import gymnasium as gym

from trainyard_core.config import ConfigError

__all__ = ["require_registered"]


def require_registered(env_id: str) -> None:
    """Raise ``ConfigError`` naming ``env_id`` (and close matches) if Gymnasium lacks it."""
    if env_id in gym.registry:
        return
    close = difflib.get_close_matches(env_id, list(gym.registry), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ConfigError(f"env_id {env_id!r} is not a registered Gymnasium environment{hint}")
