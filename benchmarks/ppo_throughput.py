"""PPO throughput of trainers-rl's PPOTrainer beside plain stable-baselines3 (the anchor).

Both train CartPole-v1 with the same hyper-parameters in this process, one after the other;
the ratio shows what trainyard's wiring costs. Run: nox -s bench (or python this file).
"""

from __future__ import annotations

import argparse
import time

import torch
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env

from trainers_rl import PPOConfig, PPOTrainer
from trainyard_core.table import print_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=50_000)
    args = parser.parse_args()
    cfg = PPOConfig(num_envs=16,
                    n_steps=128,
                    batch_size=256,
                    n_epochs=4,
                    total_timesteps=args.steps,
                    device="cpu")

    # Warm-up: the first optimiser construction in a process costs seconds (torch._dynamo).
    PPOTrainer(PPOConfig(num_envs=2, n_steps=64, batch_size=64, total_timesteps=128,
                         device="cpu")).train(progress_bar=False)

    env = make_vec_env(cfg.env_id, n_envs=cfg.num_envs, seed=cfg.seed)
    anchor = PPO("MlpPolicy",
                 env,
                 n_steps=cfg.n_steps,
                 batch_size=cfg.batch_size,
                 n_epochs=cfg.n_epochs,
                 learning_rate=cfg.learning_rate,
                 gamma=cfg.gamma,
                 gae_lambda=cfg.gae_lambda,
                 clip_range=cfg.clip_range,
                 seed=cfg.seed,
                 device="cpu",
                 policy_kwargs={"net_arch": list(cfg.net_arch)})
    start = time.perf_counter()
    anchor.learn(total_timesteps=cfg.total_timesteps)
    anchor_rate = anchor.num_timesteps / (time.perf_counter() - start)

    trainer = PPOTrainer(cfg)
    trainer.train(progress_bar=False)

    print_table(
        f"PPO on {cfg.env_id}, {cfg.num_envs} envs, {cfg.total_timesteps} steps, "
        f"torch threads {torch.get_num_threads()}", [
            {
                "run": "stable-baselines3 PPO (anchor)",
                "env_steps_per_s": anchor_rate
            },
            {
                "run": "trainers_rl.PPOTrainer",
                "env_steps_per_s": trainer.steps_per_second
            },
            {
                "run": "ratio",
                "env_steps_per_s": trainer.steps_per_second / anchor_rate
            },
        ])


if __name__ == "__main__":
    main()
