"""SAC on stable-baselines3."""

from trainers_rl.rl.sac.config import SACConfig, SACTrainingConfig
from trainers_rl.rl.sac.trainer import SACTrainer

__all__ = ["SACConfig", "SACTrainer", "SACTrainingConfig"]
