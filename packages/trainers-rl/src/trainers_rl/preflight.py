"""What a run needs before it starts, checked before any work.

``trainers-rl train --check`` (and ``ppo --check``) prints these checks and exits; every real
run makes them first too, so a missing extra, a missing key or an unwritable output directory
costs one line naming it and the pip extra to install, not a traceback after an hour of
training.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
from collections.abc import Sequence
from pathlib import Path

from trainyard_core.config import ConfigError
from trainyard_core.tracking import WANDB_EXTRA, TrackingConfig, check_wandb

__all__ = [
    "CARLA_EXTRA", "EXPORT_EXTRA", "carla_extra", "check_tracking", "check_writable", "own_extra",
    "require_modules", "wandb_extra"
]

DISTRIBUTION = "trainyard-trainers-rl"
EXPORT_EXTRA = f"{DISTRIBUTION}[export]"
CARLA_EXTRA = "trainyard-carla-env[carla]"


def own_extra(name: str, fallback: str) -> str:
    """This package's extra ``name`` when the installed package declares it (what its image
    and ``make setup`` install), else ``fallback``, the extra of the package that holds it."""
    try:
        extras = importlib.metadata.metadata(DISTRIBUTION).get_all("Provides-Extra") or []
    except importlib.metadata.PackageNotFoundError:
        extras = []
    return f"{DISTRIBUTION}[{name}]" if name in extras else fallback


def wandb_extra() -> str:
    """The extra that installs wandb for ``--use-wandb``."""
    return own_extra("wandb", WANDB_EXTRA)


def carla_extra() -> str:
    """The extra that installs the CARLA client for ``sim.backend carla``."""
    return own_extra("carla", CARLA_EXTRA)


def require_modules(modules: Sequence[str], extra: str, why: str, instead: str = "") -> str:
    """Import each module (a found but broken install fails here too); returns their versions.

    Raises ``ConfigError`` naming the first module missing, the extra that installs it and,
    if given, the setting that avoids needing it.
    """
    versions = []
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            alternative = f", or {instead}" if instead else ""
            raise ConfigError(f"{why} needs the module {name!r}, which does not import "
                              f"({reason}): pip install '{extra}'{alternative}") from exc
        version = getattr(module, "__version__", None)
        if version is None:
            try:
                version = importlib.metadata.version(name)
            except importlib.metadata.PackageNotFoundError:
                version = "(no version)"
        versions.append(f"{name} {version}")
    return ", ".join(versions)


def check_writable(path: str | Path, what: str) -> str:
    """Check that ``path`` is, or can be created as, a writable directory; creates nothing."""
    path = Path(path)
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{what} {str(path)!r} cannot be a directory: {str(existing)!r} "
                          "exists and is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{what} {str(path)!r} is not writable (no write permission on "
                          f"{str(existing.resolve())!r})")
    if existing == path:
        return f"{what} {path} is writable"
    return f"{what} {path} can be created (in {existing}, writable)"


def check_tracking(cfg: TrackingConfig) -> str:
    """W&B when ``tracking.use_wandb``: installed, and a key unless offline or disabled."""
    mode = check_wandb(cfg, wandb_extra())
    if mode is None:
        return "W&B: off (tracking.use_wandb false)"
    import wandb

    where = "under the run directory's wandb/" if mode == "offline" else "nothing logged"
    detail = where if mode != "online" else "API key found"
    return f"W&B: wandb {wandb.__version__}, mode {mode} ({detail})"
