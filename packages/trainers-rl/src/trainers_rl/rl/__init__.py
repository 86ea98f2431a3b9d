"""Reinforcement learning on stable-baselines3: trainers, their configs, callbacks, checkpoints.

Imports point one way inside this package: the trainers (``trainer``, ``ppo``, ``sac``) use
``callbacks``, ``checkpoint``, ``policies`` and ``vec_env``; none of those names a trainer.
"""

from trainers_rl.rl.ppo import PPOConfig, PPOTrainer
from trainers_rl.rl.sac import SACConfig, SACTrainer
from trainers_rl.rl.trainer import Trainer

__all__ = ["PPOConfig", "PPOTrainer", "SACConfig", "SACTrainer", "Trainer"]
