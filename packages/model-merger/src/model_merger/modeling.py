"""Which transformers class a merged model is, and building it without loading weights."""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["build_model", "model_class"]


def model_class(architectures: list[str] | None) -> Any:
    """The class ``config.json``'s ``architectures`` names, else ``AutoModelForCausalLM``."""
    import transformers

    found = getattr(transformers, architectures[0], None) if architectures else None
    return found if found is not None else transformers.AutoModelForCausalLM


def build_model(cls: Any, config: Any, dtype: torch.dtype | None = None) -> Any:
    """``cls`` built from ``config`` (on the current default device), weights not loaded."""
    if hasattr(cls, "_from_config"):  # a concrete model class
        return cls._from_config(config, dtype=dtype)
    return cls.from_config(config, dtype=dtype)  # an Auto class
