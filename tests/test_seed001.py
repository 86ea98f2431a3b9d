"""Seed 001 (online RL with CARLA) as its users type it, on the embedded backend.

Each test is one of the seed's Python snippets, changed only where the brief allows:
import paths (``integration.simulator_bridge`` -> ``carla_env``,
``train.online_rl.ppo_trainer``/``sac_trainer`` -> ``trainers_rl``,
``model.embodiment.autonomous_vehicle`` -> ``driving_vla``), sizes that must shrink for CI
(each marked ``# CI:``), and ``carla_town``: the seed names Town01, a CARLA map, which the
embedded backend refuses (tested with the seed's exact config) — the rest of each snippet runs
without it. No CARLA server is needed.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest
import torch

from carla_env import CARLABridge, SimulatorConfig
from driving_vla import DrivingVLA, DrivingVLAConfig
from trainers_rl import PPOConfig, PPOTrainer, SACConfig, SACTrainer

CI_STEPS = 128  # CI: the seed trains 1_000_000 / 500_000 steps
CI_NUM_STEPS = 64  # CI: the seed's rollouts are 2048 steps long


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_bridge_config_as_written_is_refused_naming_the_carla_backend() -> None:
    # "Using CARLABridge", exactly as written: Town01 is a CARLA map.
    with pytest.raises(ValueError, match=r"carla_town='Town01'.*only backend='carla'"):
        SimulatorConfig(
            # Connection
            carla_host="localhost",
            carla_port=2000,
            carla_town="Town01",

            # Rendering
            render=True,
            headless=False,
            fps=30,

            # Physics
            physics_dt=1.0 / 60.0,  # 60 Hz physics
            control_dt=1.0 / 30.0,  # 30 Hz control

            # Camera
            image_width=224,
            image_height=224,
        )
    # The PPO snippet's shorter config, as written, too.
    with pytest.raises(ValueError, match=r"only backend='carla'"):
        SimulatorConfig(carla_host="localhost", carla_port=2000, carla_town="Town01")


def test_bridge_snippet_runs_without_the_town() -> None:
    config = SimulatorConfig(
        # Connection
        carla_host="localhost",
        carla_port=2000,

        # Rendering
        render=True,
        headless=False,
        fps=30,

        # Physics
        physics_dt=1.0 / 60.0,  # 60 Hz physics
        control_dt=1.0 / 30.0,  # 30 Hz control

        # Camera
        image_width=224,
        image_height=224,
    )

    bridge = CARLABridge(config)
    bridge.initialize()

    obs, _ = bridge.reset(seed=0)
    assert set(obs) == {"state", "neighbors"}
    obs, reward, _, _, info = bridge.step(bridge.action_space.sample())
    assert bridge.observation_space.contains(obs)
    assert isinstance(reward, float) and "lane_deviation" in info
    assert config.substeps == 2  # 60 Hz physics under 30 Hz control
    bridge.close()


def _ppo_snippet(tmp_path: Path) -> tuple[DrivingVLA, PPOTrainer, dict[str, torch.Tensor]]:
    # "PPO Training with CARLA"
    # Setup simulator
    sim_config = SimulatorConfig(
        carla_host="localhost",
        carla_port=2000,
        # carla_town="Town01": refused on the embedded backend (tested above)
    )
    env = CARLABridge(sim_config)
    env.initialize()

    # Setup model
    model_config = DrivingVLAConfig(
        num_cameras=1,
        image_size=224,
        action_dim=3,  # throttle, steer, brake
        trajectory_length=10,
    )
    model = DrivingVLA(model_config)
    before = _state(model)

    # Setup PPO
    ppo_config = PPOConfig(
        learning_rate=3e-4,
        gamma=0.99,
        gae_lambda=0.95,
        clip_epsilon=0.2,
        num_epochs=10,
        batch_size=64,
        num_steps=CI_NUM_STEPS,
    )

    trainer = PPOTrainer(
        model=model,
        env=env,
        config=ppo_config,
    )

    # Train
    trainer.train(total_timesteps=CI_STEPS)
    return model, trainer, before


def test_ppo_snippet_trains_the_callers_model(tmp_path: Path) -> None:
    model, trainer, before = _ppo_snippet(tmp_path)
    assert trainer.model.num_timesteps >= CI_STEPS
    # The object the seed holds is the trained policy, not the untrained one it passed in.
    trained = _state(trainer.driving_vla())
    assert _same(_state(model), trained)
    assert not _same(before, trained)

    # "SAC Training with CARLA" continues with the same model and env.
    sac_config = SACConfig(
        learning_rate=3e-4,
        gamma=0.99,
        tau=0.005,
        alpha=0.2,
        batch_size=256,
        buffer_size=1_000,  # CI: the seed keeps 1_000_000 transitions
        learning_starts=256,  # CI: SB3's default waits 5_000 steps before the first update
    )
    assert sac_config.ent_coef == 0.2  # alpha is SAC's entropy coefficient

    env = trainer.env.envs[0]  # type: ignore[attr-defined]  # the seed's env object
    with pytest.warns(UserWarning, match=r"control_activation"):
        trainer = SACTrainer(  # type: ignore[assignment]
            model=model,
            env=env,
            config=sac_config,
        )
    assert trainer.model.ent_coef == 0.2  # type: ignore[attr-defined]
    ppo_weights = _state(model)

    trainer.train(total_timesteps=CI_STEPS * 3)  # CI: the seed trains 1_000_000 steps
    sac_trained = _state(trainer.driving_vla())
    assert _same(_state(model), sac_trained)
    assert not _same(ppo_weights, sac_trained)
    assert model.config.control_activation == "tanh"  # SAC's head means that only through tanh


def train_carla_ppo(args: argparse.Namespace) -> None:
    """The seed's ``train_carla_ppo.py`` main(), after argument parsing."""
    # Setup environment
    sim_config = SimulatorConfig(
        carla_host=args.carla_host,
        carla_port=args.carla_port,
        carla_town=args.carla_town,
        image_width=224,
        image_height=224,
    )
    env = CARLABridge(sim_config)
    env.initialize()

    # Setup model
    model_config = DrivingVLAConfig(
        num_cameras=1,
        image_size=224,
        action_dim=3,
    )
    model = DrivingVLA(model_config).to(args.device)

    # Setup trainer
    ppo_config = PPOConfig(
        learning_rate=3e-4,
        num_steps=CI_NUM_STEPS,
        batch_size=64,
    )
    trainer = PPOTrainer(model, env, ppo_config)

    # Train
    os.makedirs(args.output_dir, exist_ok=True)
    trainer.train(
        total_timesteps=args.total_timesteps,
        save_dir=args.output_dir,
    )

    # Cleanup
    env.close()


def _args(tmp_path: Path, carla_town: str | None) -> argparse.Namespace:
    return argparse.Namespace(carla_host="localhost",
                              carla_port=2000,
                              carla_town=carla_town,
                              total_timesteps=CI_STEPS,
                              output_dir=str(tmp_path / "output" / "carla_ppo"),
                              device="cpu")  # CI: the seed's default device is cuda


def test_training_script_saves_the_trained_model_and_stage3_continues(tmp_path: Path) -> None:
    # The script's defaults name Town01: refused on this backend before anything is built.
    with pytest.raises(ValueError, match=r"only backend='carla'"):
        train_carla_ppo(_args(tmp_path, "Town01"))

    args = _args(tmp_path, None)
    (Path(args.output_dir) / "notes.txt").parent.mkdir(parents=True)
    (Path(args.output_dir) / "notes.txt").write_text("kept")
    train_carla_ppo(args)
    saved = Path(args.output_dir)
    assert (saved / "notes.txt").read_text() == "kept"  # save_dir is not wiped
    assert (saved / "config.json").is_file() and (saved / "model.safetensors").is_file()
    assert not [p for p in saved.iterdir() if p.name.startswith(".")]

    # "Loading Pretrained Weights"
    sim_config = SimulatorConfig()
    env = CARLABridge(sim_config)
    env.initialize()
    config = PPOConfig(num_steps=CI_NUM_STEPS, batch_size=64)

    # Load from offline training
    model = DrivingVLA.from_pretrained(args.output_dir)
    loaded = _state(model)
    assert not _same(loaded, _state(DrivingVLA(model.config)))  # trained weights, not init

    # Continue with online RL
    trainer = PPOTrainer(model, env, config)
    trainer.train(total_timesteps=CI_STEPS)  # CI: the seed continues for 500_000 steps

    # Save final model
    final = tmp_path / "output" / "stage3_online" / "final"
    model.save_pretrained(str(final))

    reloaded = _state(DrivingVLA.from_pretrained(str(final)))
    assert _same(reloaded, _state(trainer.driving_vla()))
    assert not _same(reloaded, loaded)


def test_reward_wrapper_keys_set_the_training_reward(tmp_path: Path) -> None:
    # "Custom Reward Wrapper": CARLARewardWrapper(env, reward_config) with the seed's keys;
    # here the same dict configures the env's reward, from Python or the training YAML.
    reward_config = {
        "speed_weight": 1.0,
        "lane_weight": 0.5,
        "collision_penalty": 10.0,
        "target_speed": 8.33,
    }
    env = CARLABridge(SimulatorConfig(reward=reward_config)).initialize()  # type: ignore[arg-type]
    weights = env.env.batch.reward_cfg  # type: ignore[union-attr]
    assert (weights.progress, weights.lane_keeping, weights.collision) == (1.0, 0.5, 10.0)
    assert weights.speed_scale == pytest.approx(8.33 * SimulatorConfig().control_dt)

    from trainers_rl.pipeline import DrivingRunConfig
    from trainyard_core.config import load_config

    root = Path(__file__).resolve().parent.parent
    yaml = tmp_path / "reward.yaml"
    yaml.write_text("sim:\n  reward:\n" +
                    "".join(f"    {k}: {v}\n" for k, v in reward_config.items()))
    cfg = load_config(DrivingRunConfig,
                      files=[root / "configs/train/driving.yaml", yaml],
                      overrides=["sim.reward.lane_weight=0.25"])
    assert (cfg.sim.reward.progress, cfg.sim.reward.lane_keeping, cfg.sim.reward.collision,
            cfg.sim.reward.target_speed) == (1.0, 0.25, 10.0, 8.33)


def test_compose_environment_points_the_simulator_at_its_server(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # "Multi-GPU Configuration": the training service gets CARLA_HOST=carla, CARLA_PORT=2000.
    monkeypatch.setenv("CARLA_HOST", "carla")
    monkeypatch.setenv("CARLA_PORT", "2000")
    config = SimulatorConfig(backend="carla")
    assert (config.carla_host, config.carla_port) == ("carla", 2000)
    assert SimulatorConfig(backend="carla", carla_host="localhost").carla_host == "localhost"
