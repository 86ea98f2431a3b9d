"""Run directories and experiment tracking: TensorBoard by default, Weights & Biases opt-in.

TensorBoard event files are the one logging path; W&B, when enabled, mirrors them
(``sync_tensorboard``) instead of being a second set of logging calls in every trainer.

W&B follows its own environment: ``WANDB_MODE=offline`` writes the run under the run
directory's ``wandb/`` (``wandb sync`` uploads it later) and ``WANDB_MODE=disabled`` logs
nothing; neither needs an API key or the network. Online mode needs ``WANDB_API_KEY`` or a
``wandb login``; ``check_wandb`` says so in one line before any work starts.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
from pathlib import Path
from typing import Any

from trainyard_core.config import ConfigError

__all__ = ["WANDB_EXTRA", "TrackingConfig", "check_wandb", "make_run_dir", "start_wandb"]

WANDB_EXTRA = "trainyard-core[wandb]"
"""The pip extra that installs wandb; a command's package may name its own extra instead."""

_MODES = {
    "online": "online",
    "run": "online",
    "shared": "online",
    "offline": "offline",
    "dryrun": "offline",
    "disabled": "disabled"
}


@dataclasses.dataclass
class TrackingConfig:
    """Where a run logs to."""

    tensorboard: bool = dataclasses.field(default=True,
                                          metadata={"help": "write TensorBoard event files"})
    use_wandb: bool = dataclasses.field(default=False,
                                        metadata={
                                            "help": "mirror TensorBoard logs to W&B",
                                            "flags": ("--use-wandb",)
                                        })
    wandb_project: str | None = dataclasses.field(
        default=None,
        metadata={
            "help": "W&B project (else $WANDB_PROJECT, else 'trainyard')",
            "flags": ("--wandb-project",)
        })
    wandb_entity: str | None = dataclasses.field(default=None,
                                                 metadata={"flags": ("--wandb-entity",)})


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def make_run_dir(root: str | Path, name: str, timestamp: bool = True) -> Path:
    """Create ``root/name[-YYYYmmdd-HHMMSS]`` and return it."""
    if not _NAME.match(name):
        raise ValueError(f"run name {name!r} must be letters, digits, '.', '_' or '-'")
    if timestamp:
        name = f"{name}-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    path = Path(root) / name
    path.mkdir(parents=True, exist_ok=not timestamp)
    return path


def _first_line(exc: BaseException) -> str:
    """An exception's message on one line (pydantic's span several)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return "; ".join(lines[:3]) if lines else type(exc).__name__


def _wandb_settings(wandb: Any) -> Any:
    """The settings ``wandb.init`` will resolve (settings files, then the environment), read
    the way ``wandb.setup`` reads them but without starting wandb's service process."""
    try:
        settings = wandb.Settings()
        config_dir = os.environ.get("WANDB_CONFIG_DIR")
        system = Path(config_dir or "~/.config/wandb").expanduser() / "settings"
        settings.settings_system = str(system)
        settings.update_from_system_settings()
        settings.update_from_env_vars(dict(os.environ))
        settings.update_from_system_environment()
        return settings
    except AttributeError:  # a wandb without these methods: the environment alone
        import types

        return types.SimpleNamespace(mode=os.environ.get("WANDB_MODE", "online"),
                                     api_key=None,
                                     base_url=os.environ.get("WANDB_BASE_URL",
                                                             "https://api.wandb.ai"))


def _has_api_key(wandb: Any, settings: Any) -> bool:
    """Whether wandb will find credentials without prompting (env, netrc, settings)."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    if getattr(settings, "api_key", None):
        return True
    try:
        from wandb.sdk.lib.wbauth import read_netrc_auth
    except ImportError:  # another wandb layout: fall back to reading ~/.netrc ourselves
        import netrc
        from urllib.parse import urlsplit

        path = Path(os.environ.get("NETRC") or Path.home() / ".netrc").expanduser()
        try:
            entry = netrc.netrc(str(path)).authenticators(urlsplit(settings.base_url).netloc)
        except (OSError, netrc.NetrcParseError):
            return False
        return bool(entry and entry[2])
    try:
        return bool(read_netrc_auth(host=settings.base_url))
    except wandb.errors.Error:
        return False


def check_wandb(cfg: TrackingConfig, extra: str = WANDB_EXTRA) -> str | None:
    """Check that ``start_wandb`` can start: wandb installed, and a key unless W&B logs
    offline or is disabled. Returns the mode (online, offline, disabled), None when W&B is off.

    Runs before any work, so a missing piece costs one line, not a traceback an hour in.
    """
    if not cfg.use_wandb:
        return None
    try:
        import wandb
    except ImportError as exc:
        raise ConfigError(f"tracking.use_wandb is set but wandb is not installed: pip install "
                          f"'{extra}' (or drop --use-wandb)") from exc
    env_mode = os.environ.get("WANDB_MODE")
    if env_mode is not None and env_mode not in _MODES:
        raise ConfigError(f"WANDB_MODE={env_mode!r} is not a W&B mode: expected online, offline "
                          "or disabled (unset, W&B logs online)")
    try:
        settings = _wandb_settings(wandb)
    except (ValueError, wandb.errors.Error) as exc:
        raise ConfigError(f"W&B settings are invalid: {_first_line(exc)}") from exc
    mode = _MODES.get(str(settings.mode), "online")
    if mode == "online" and not _has_api_key(wandb, settings):
        raise ConfigError("tracking.use_wandb logs to W&B online but no API key was found: set "
                          "WANDB_API_KEY (or run `wandb login`), or set WANDB_MODE=offline to "
                          "log under the run directory without a key")
    return mode


def start_wandb(cfg: TrackingConfig,
                run_dir: Path,
                config: dict[str, Any],
                extra: str = WANDB_EXTRA) -> Any | None:
    """Start a W&B run that syncs this run's TensorBoard logs, if ``use_wandb`` is set."""
    if check_wandb(cfg, extra) is None:
        return None
    import wandb

    try:
        return wandb.init(project=cfg.wandb_project or os.environ.get("WANDB_PROJECT") or
                          "trainyard",
                          entity=cfg.wandb_entity or os.environ.get("WANDB_ENTITY") or None,
                          dir=str(run_dir),
                          config=config,
                          sync_tensorboard=True,
                          name=run_dir.name)
    except wandb.errors.Error as exc:
        raise ConfigError(f"W&B could not start a run: {_first_line(exc)} (WANDB_MODE=offline "
                          "logs under the run directory without the network)") from exc
