"""Driving environments for trainyard (import name ``carla_env``).

Importing the package registers ``trainyard/Driving-v0`` with Gymnasium::

    env = gymnasium.make("trainyard/Driving-v0", config=SimulatorConfig(scenario="urban"))
    envs = gymnasium.make_vec("trainyard/Driving-v0", num_envs=64,
                              vectorization_mode="vector_entry_point")

Seed 001's spelling works too: ``CARLABridge(SimulatorConfig(...)).initialize()``.
"""

import gymnasium as gym

from carla_env.bridge import CARLABridge
from carla_env.config import SimulatorConfig
from carla_env.envs import ENV_ID
from carla_env.reward import RewardConfig

__all__ = ["ENV_ID", "CARLABridge", "RewardConfig", "SimulatorConfig"]
__version__ = "0.1.0"

if ENV_ID not in gym.registry:
    gym.register(ENV_ID,
                 entry_point="carla_env.envs:make_env",
                 vector_entry_point="carla_env.envs:make_vector_env")
