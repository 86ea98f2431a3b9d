"""VLA fine-tuning on robot-arm logs (import name ``vla_finetune``)."""

__version__ = "0.1.0"
