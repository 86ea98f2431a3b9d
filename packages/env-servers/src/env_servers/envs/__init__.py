"""The environment families a server can run, imported only when chosen.

Importing a family pulls in its simulator (minigrid, a JVM bridge, a search index), so the
registry maps names to ``module:Class`` strings and ``load_family`` imports just the one.
"""

from __future__ import annotations

import importlib
from typing import Any

from env_servers.envs.base import EnvFamily

__all__ = ["FAMILIES", "family_class", "load_family"]

FAMILIES: dict[str, str] = {
    "babyai": "env_servers.envs.babyai:BabyAIFamily",
    "textcraft": "env_servers.envs.textcraft:TextCraftFamily",
    "sciworld": "env_servers.envs.sciworld:SciWorldFamily",
    "searchqa": "env_servers.envs.searchqa:SearchQAFamily",
}


def family_class(name: str) -> type[EnvFamily]:
    """The class registered as ``name``; ``ValueError`` naming the known ones otherwise."""
    try:
        target = FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown environment family {name!r}; "
                         f"known: {', '.join(FAMILIES)}") from None
    module_name, _, class_name = target.partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    if not (isinstance(cls, type) and issubclass(cls, EnvFamily)):
        raise TypeError(f"{target} is not an EnvFamily subclass")
    return cls


def load_family(name: str, **options: Any) -> EnvFamily:
    """Import and build the family ``name`` with ``options`` (its constructor's keywords)."""
    return family_class(name)(**options)
