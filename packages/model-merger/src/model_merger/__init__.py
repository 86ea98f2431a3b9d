"""Checkpoints to Hugging Face models (import name ``model_merger``)."""

from model_merger.formats import CheckpointError, CheckpointInfo, detect_checkpoint

__all__ = ["CheckpointError", "CheckpointInfo", "detect_checkpoint"]
__version__ = "0.1.0"
