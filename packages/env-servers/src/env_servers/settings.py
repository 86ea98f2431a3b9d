"""``ServeConfig``: what one server process serves, where, and within which limits."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

from env_servers.envs import FAMILIES

__all__ = ["DEFAULT_PORT", "OFFLOAD_MODES", "ServeConfig"]

DEFAULT_PORT = 36001  # AgentGym's and AgentGym-RL's port
OFFLOAD_MODES = ("auto", "thread", "inline")
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


def _env_from_environment() -> str:
    # `ENV=babyai env-servers serve` and the image's `ENV` pick the family.
    return os.environ.get("ENV", "babyai")


@dataclasses.dataclass
class ServeConfig:
    """One environment family per process (AgentGym's layout), bound to loopback by default."""

    env: str = dataclasses.field(
        default_factory=_env_from_environment,
        metadata={
            "help": f"environment family: {', '.join(FAMILIES)}; the ENV variable "
                    "sets the default"
        })
    env_options: str = dataclasses.field(
        default="",
        metadata={
            "help": "JSON object of the family's options, e.g. "
                    '\'{"seeds_per_level": 100}\' (babyai), \'{"max_jvms": 8}\' (sciworld), '
                    '\'{"corpus_path": "..."}\' (searchqa)'
        })
    host: str = dataclasses.field(
        default="127.0.0.1",
        metadata={"help": "address to bind; 0.0.0.0 opens it to the "
                          "network"})
    port: int = DEFAULT_PORT
    max_instances: int = dataclasses.field(
        default=1024, metadata={"help": "live instances at most; /create answers 429 beyond"})
    idle_timeout_s: float = dataclasses.field(
        default=1800.0,
        metadata={"help": "an instance untouched this long is closed; its id then answers 404"})
    max_body_bytes: int = dataclasses.field(default=1 << 20,
                                            metadata={"help": "larger request bodies answer 413"})
    max_action_chars: int = dataclasses.field(
        default=16384,
        metadata={"help": "longer actions answer 422 (SearchQA sends whole replies)"})
    offload: str = dataclasses.field(
        default="auto",
        metadata={
            "help": "where env calls run: auto (threads for blocking families such as "
                    "sciworld and searchqa), thread, inline"
        })
    strict_actions: bool = dataclasses.field(
        default=False,
        metadata={
            "help": "answer an empty or unparseable action with 422 instead of AgentGym's "
                    "in-game message (HTTP 200, counted in /health's invalid_actions)"
        })
    access_log: bool = dataclasses.field(default=False,
                                         metadata={"help": "log every request (costs throughput)"})
    log_level: str = "info"

    def __post_init__(self) -> None:
        if self.env not in FAMILIES:
            raise ValueError(f"env must be one of {', '.join(FAMILIES)}, got {self.env!r}")
        self.family_options()  # fails early on a bad JSON object
        if not 0 < self.port < 65536:
            raise ValueError(f"port must be in 1..65535, got {self.port}")
        if self.max_instances < 1:
            raise ValueError(f"max_instances must be >= 1, got {self.max_instances}")
        if self.idle_timeout_s <= 0:
            raise ValueError(f"idle_timeout_s must be > 0, got {self.idle_timeout_s}")
        if self.max_body_bytes < 1024:
            raise ValueError(f"max_body_bytes must be >= 1024, got {self.max_body_bytes}")
        if self.max_action_chars < 1:
            raise ValueError(f"max_action_chars must be >= 1, got {self.max_action_chars}")
        if self.offload not in OFFLOAD_MODES:
            raise ValueError(f"offload must be one of {', '.join(OFFLOAD_MODES)}, "
                             f"got {self.offload!r}")
        if self.log_level not in LOG_LEVELS:
            raise ValueError(f"log_level must be one of {', '.join(LOG_LEVELS)}, "
                             f"got {self.log_level!r}")

    def family_options(self) -> dict[str, Any]:
        """``env_options`` parsed: keyword arguments for the family's constructor."""
        if not self.env_options.strip():
            return {}
        try:
            options = json.loads(self.env_options)
        except json.JSONDecodeError as exc:
            raise ValueError(f"env_options must be a JSON object: {exc}") from exc
        if not isinstance(options, dict):
            raise ValueError(f"env_options must be a JSON object, got {self.env_options!r}")
        return options
