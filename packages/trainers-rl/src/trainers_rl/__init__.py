"""Trainers for trainyard policies (import name ``trainers_rl``)."""

from trainers_rl.ppo import PPOConfig, PPOTrainer

__all__ = ["PPOConfig", "PPOTrainer"]
__version__ = "0.1.0"
