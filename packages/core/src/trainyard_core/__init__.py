"""Shared building blocks of the trainyard packages."""

from trainyard_core.config import ConfigError, load_config, save_config

__all__ = ["ConfigError", "load_config", "save_config"]
__version__ = "0.1.0"
