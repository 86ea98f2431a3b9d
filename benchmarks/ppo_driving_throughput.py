"""Whole-run PPO throughput on the embedded driving simulator (rollouts and updates).

stable-baselines3 PPO (`MultiInputPolicy`, state observations) trains the same number of
steps twice in this process: through `SB3VecEnv` over one batched `EmbeddedVectorEnv`, and,
as the anchor, through SB3's `DummyVecEnv` over as many single `EmbeddedDrivingEnv`s. The
share of wall time spent inside the simulator is reported for the batched run.
"""

from __future__ import annotations

import argparse
import time

from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecMonitor

from carla_env import SimulatorConfig
from carla_env.embedded import EmbeddedDrivingEnv, EmbeddedVectorEnv
from trainers_rl.ppo import PPOConfig, PPOTrainer
from trainers_rl.vec_env import SB3VecEnv
from trainyard_core.table import print_table


def _run(env: VecEnv, cfg: PPOConfig) -> tuple[float, PPOTrainer]:
    trainer = PPOTrainer(cfg, env=VecMonitor(env))
    start = time.perf_counter()
    trainer.train(progress_bar=False)
    return trainer.model.num_timesteps / (time.perf_counter() - start), trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--envs", type=int, default=32)
    parser.add_argument("--steps", type=int, default=65_536)
    args = parser.parse_args()
    sim = SimulatorConfig(observation_keys=["state"])
    cfg = PPOConfig(num_envs=args.envs,
                    num_steps=64,
                    batch_size=512,
                    num_epochs=4,
                    total_timesteps=args.steps,
                    device="cpu")
    # Warm-up: the first optimiser in a process pays for torch._dynamo's import.
    _run(SB3VecEnv(EmbeddedVectorEnv(4, sim)),
         PPOConfig(num_envs=4, num_steps=64, batch_size=64, total_timesteps=256, device="cpu"))
    adapter = SB3VecEnv(EmbeddedVectorEnv(args.envs, sim))
    batched, trainer = _run(adapter, cfg)
    share = adapter.sim_seconds / trainer.train_seconds
    single, _ = _run(DummyVecEnv([lambda: EmbeddedDrivingEnv(sim)] * args.envs), cfg)
    print_table(f"PPO on trainyard/Driving-v0 (state), {args.envs} envs, {args.steps} steps", [
        {
            "run": "SB3VecEnv over EmbeddedVectorEnv",
            "env_steps_per_s": batched,
            "sim_share": share
        },
        {
            "run": "DummyVecEnv over single envs (anchor)",
            "env_steps_per_s": single,
            "sim_share": "-"
        },
        {
            "run": "ratio",
            "env_steps_per_s": batched / single,
            "sim_share": "-"
        },
    ])


if __name__ == "__main__":
    main()
