"""Whole-run PPO throughput on the embedded driving simulator (rollouts and updates together).

Three runs of the same PPO hyper-parameters and step count on the same state observations:

1. ``PPOTrainer`` with DrivingVLA as the policy, through ``SB3VecEnv`` over one batched
   ``EmbeddedVectorEnv`` — what ``make train`` runs; the share of wall time spent inside the
   simulator is reported;
2. stable-baselines3's own PPO with a plain ``MlpPolicy`` on the same batched env (SB3's
   ``VecExtractDictObs`` hands it the state vector);
3. the same SB3 PPO through SB3's ``DummyVecEnv`` over single ``EmbeddedDrivingEnv``\\ s — the
   way a Gymnasium env is usually fed to SB3 (the anchor).
"""

from __future__ import annotations

import argparse
import time

import torch
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecExtractDictObs, VecMonitor

from carla_env import SimulatorConfig
from carla_env.embedded import EmbeddedDrivingEnv, EmbeddedVectorEnv
from trainers_rl import PPOConfig, PPOTrainer
from trainers_rl.rl.vec_env import SB3VecEnv
from trainyard_core.table import print_table


def _sb3_mlp(env: VecEnv, cfg: PPOConfig) -> float:
    model = PPO("MlpPolicy",
                VecMonitor(VecExtractDictObs(env, "state")),
                n_steps=cfg.n_steps,
                batch_size=cfg.batch_size,
                n_epochs=cfg.n_epochs,
                learning_rate=cfg.learning_rate,
                seed=cfg.seed,
                device="cpu")
    start = time.perf_counter()
    model.learn(total_timesteps=cfg.total_timesteps)
    return model.num_timesteps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--envs", type=int, default=64)
    parser.add_argument("--steps", type=int, default=131_072)
    parser.add_argument("--hidden-size", type=int, default=128)
    parser.add_argument("--torch-threads",
                        type=int,
                        default=1,
                        help="as make train sets it (configs/train/driving.yaml); 0 = torch's")
    args = parser.parse_args()
    if args.torch_threads > 0:
        torch.set_num_threads(args.torch_threads)
    sim = SimulatorConfig(observation_keys=["state"])
    cfg = PPOConfig(policy="driving_vla",
                    hidden_size=args.hidden_size,
                    num_envs=args.envs,
                    n_steps=64,
                    batch_size=1024,
                    n_epochs=4,
                    total_timesteps=args.steps,
                    device="cpu")
    # Warm-up: the first optimiser in a process pays for torch._dynamo's import.
    PPOTrainer(PPOConfig(num_envs=4, n_steps=64, batch_size=64, total_timesteps=256, device="cpu"),
               env=EmbeddedVectorEnv(4, sim)).train(progress_bar=False)

    adapter = SB3VecEnv(EmbeddedVectorEnv(args.envs, sim))
    trainer = PPOTrainer(cfg, env=adapter)
    trainer.train(progress_bar=False)
    ours = trainer.steps_per_second
    share = adapter.sim_seconds / trainer.train_seconds
    mlp_batched = _sb3_mlp(SB3VecEnv(EmbeddedVectorEnv(args.envs, sim)), cfg)
    mlp_dummy = _sb3_mlp(DummyVecEnv([lambda: EmbeddedDrivingEnv(sim)] * args.envs), cfg)
    print_table(
        f"PPO on trainyard/Driving-v0 (state), {args.envs} envs, {args.steps} steps, "
        f"{torch.get_num_threads()} torch threads", [
            {
                "run": f"PPOTrainer, DrivingVLA (hidden {args.hidden_size}), SB3VecEnv",
                "env_steps_per_s": ours,
                "sim_share": share,
            },
            {
                "run": "SB3 PPO, MlpPolicy, SB3VecEnv (same env)",
                "env_steps_per_s": mlp_batched,
                "sim_share": "-",
            },
            {
                "run": "SB3 PPO, MlpPolicy, DummyVecEnv of single envs (anchor)",
                "env_steps_per_s": mlp_dummy,
                "sim_share": "-",
            },
        ])
    print(f"PPOTrainer/anchor: {ours / mlp_dummy:.1f}x; goal >= 5000 env-steps/s: "
          f"{'met' if ours >= 5000 else 'NOT met'}")


if __name__ == "__main__":
    main()
