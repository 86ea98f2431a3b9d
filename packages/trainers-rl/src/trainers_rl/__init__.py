"""Trainers for trainyard policies (import name ``trainers_rl``)."""

from trainers_rl.rl.ppo import PPOConfig, PPOTrainer
from trainers_rl.rl.sac import SACConfig, SACTrainer

__all__ = ["PPOConfig", "PPOTrainer", "SACConfig", "SACTrainer"]
__version__ = "0.1.0"
