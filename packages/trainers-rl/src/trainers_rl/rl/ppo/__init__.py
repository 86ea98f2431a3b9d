"""PPO on stable-baselines3."""

from trainers_rl.rl.ppo.config import PPOConfig, PPOTrainingConfig
from trainers_rl.rl.ppo.trainer import PPOTrainer

__all__ = ["PPOConfig", "PPOTrainer", "PPOTrainingConfig"]
