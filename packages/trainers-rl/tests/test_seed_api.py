"""Seed 001's trainer API beside this package's: argument orders, alpha, the caller's model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from carla_env import SimulatorConfig
from carla_env.embedded import EmbeddedVectorEnv
from driving_vla import DrivingVLA, DrivingVLAConfig
from trainers_rl import PPOConfig, PPOTrainer, SACConfig, SACTrainer
from trainers_rl.pipeline import DrivingRunConfig
from trainers_rl.rl.ppo import PPOTrainingConfig
from trainers_rl.rl.sac import SACTrainingConfig
from trainyard_core.config import ConfigError, load_config

SMALL: dict[str, Any] = {"n_steps": 32, "batch_size": 32, "n_epochs": 2, "device": "cpu"}


def _model() -> DrivingVLA:
    return DrivingVLA(DrivingVLAConfig(hidden_size=32))


def test_both_argument_orders_and_keywords_build_the_same_trainer(tmp_path: Path) -> None:
    config, model = PPOConfig(**SMALL), _model()
    env = EmbeddedVectorEnv(2, SimulatorConfig())
    for trainer in (PPOTrainer(model, env, config), PPOTrainer(config, env, model),
                    PPOTrainer(config, env=env, model=model,
                               run_dir=tmp_path), PPOTrainer(model=model, env=env, config=config)):
        assert trainer.config is config and trainer.target is model
        assert trainer.uses_driving_vla
    assert PPOTrainer(config, env, model, tmp_path).run_dir == tmp_path


def test_ambiguous_or_wrong_arguments_are_refused_by_name() -> None:
    env = EmbeddedVectorEnv(2, SimulatorConfig())
    with pytest.raises(TypeError, match=r"two values for config"):
        PPOTrainer(PPOConfig(**SMALL), env, config=PPOConfig(**SMALL))
    with pytest.raises(TypeError,
                       match=r"config must be a PPOConfig or PPOTrainingConfig, got SACConfig"):
        PPOTrainer(_model(), env, SACConfig())
    with pytest.raises(TypeError, match=r"model must be a DrivingVLA, got dict"):
        PPOTrainer(model={"hidden_size": 32}, env=env)


def test_train_save_dir_refused_for_the_mlp_policy(tmp_path: Path) -> None:
    trainer = PPOTrainer(PPOConfig(**SMALL), EmbeddedVectorEnv(2, SimulatorConfig()))
    with pytest.raises(TypeError, match=r"save_dir"):
        trainer.train(64, save_dir=tmp_path / "model")
    assert not (tmp_path / "model").exists()


def test_caller_model_is_synced_at_each_checkpoint(tmp_path: Path) -> None:
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = PPOTrainer(model,
                         EmbeddedVectorEnv(2, SimulatorConfig()),
                         PPOConfig(checkpoint_every=64, **SMALL),
                         run_dir=tmp_path)
    seen: list[bool] = []
    original = trainer.save_checkpoint

    def spy(path: str | Path) -> Path:
        saved = original(path)
        trained = trainer.driving_vla().state_dict()
        seen.append(all(torch.equal(v, trained[k]) for k, v in model.state_dict().items()))
        return saved

    trainer.save_checkpoint = spy  # type: ignore[method-assign]
    trainer.train(128, progress_bar=False, save_dir=tmp_path / "model")
    assert seen and all(seen)
    assert not all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    saved = DrivingVLA.from_pretrained(tmp_path / "model").state_dict()
    assert all(torch.equal(v, saved[k]) for k, v in model.state_dict().items())


def test_alpha_from_yaml_and_overrides(tmp_path: Path) -> None:
    yaml = tmp_path / "run.yaml"
    yaml.write_text("rl:\n  algorithm: sac\n  sac:\n    alpha: 0.2\n")
    cfg = load_config(DrivingRunConfig, files=[yaml])
    assert cfg.rl.sac.ent_coef == 0.2 and cfg.rl.sac.alpha is None
    assert load_config(DrivingRunConfig, overrides=["rl.sac.alpha=1"]).rl.sac.ent_coef == 1.0
    with pytest.raises(ConfigError, match=r"alpha must be a positive number"):
        load_config(DrivingRunConfig, overrides=["rl.sac.alpha=-1"])
    with pytest.raises(ConfigError, match=r"alpha=0.2 and ent_coef=0.3 both set"):
        load_config(DrivingRunConfig, overrides=["rl.sac.alpha=0.2", "rl.sac.ent_coef=0.3"])


def test_ppo_fields_have_sb3_names_and_the_seed_names_as_aliases(tmp_path: Path) -> None:
    seed = PPOConfig(clip_epsilon=0.1, num_epochs=3, num_steps=64)
    assert (seed.clip_range, seed.n_epochs, seed.n_steps) == (0.1, 3, 64)
    trainer = PPOTrainer(seed, EmbeddedVectorEnv(2, SimulatorConfig()), _model())
    assert (trainer.model.n_epochs, trainer.model.n_steps) == (3, 64)
    assert trainer.model.clip_range(1.0) == 0.1
    # A run config saved before the rename (old names) still loads, and resumes.
    old = tmp_path / "config.yaml"
    old.write_text("rl:\n  ppo:\n    clip_epsilon: 0.1\n    num_steps: 64\n    num_epochs: 3\n")
    ppo = load_config(DrivingRunConfig, files=[old]).rl.ppo
    assert (ppo.clip_range, ppo.n_steps, ppo.n_epochs) == (0.1, 64, 3)
    with pytest.raises(ConfigError,
                       match=r"rl\.ppo\.clip_epsilon is the old name of "
                       r"rl\.ppo\.clip_range"):
        load_config(DrivingRunConfig,
                    overrides=["rl.ppo.clip_epsilon=0.1", "rl.ppo.clip_range=0.3"])
    with pytest.raises(ValueError, match=r"num_steps=64 and n_steps=32 both given"):
        PPOConfig(num_steps=64, n_steps=32)


# Options that choose what to build (env_id, policy, net_arch, hidden_size; SAC's qf_net_arch
# for the mlp) are refused, by name, where what they would build is given instead.


@pytest.mark.parametrize(("settings", "model", "message"), [
    ({
        "policy": "driving_vla",
        "hidden_size": 32
    }, True, r"PPOConfig\.hidden_size=32 sets the width of a DrivingVLA to build, but a model was "
     r"passed in"),
    ({
        "net_arch": [32, 32]
    }, True,
     r"PPOConfig\.net_arch=\[32, 32\] sets the mlp policy's layers, but a model was passed in"),
    ({
        "env_id": "Pendulum-v1"
    }, False, r"PPOConfig\.env_id='Pendulum-v1' names an env to build, but an env was passed in"),
])
def test_build_options_next_to_a_given_model_or_env_are_refused(settings: dict[str, Any],
                                                                model: bool, message: str) -> None:
    env = EmbeddedVectorEnv(2, SimulatorConfig())
    config = PPOConfig(**SMALL, **settings)
    with pytest.raises(ConfigError, match=message):
        PPOTrainer(_model() if model else None, env, config)


def test_several_inapplicable_options_are_all_named() -> None:
    config = PPOConfig(**SMALL, env_id="Pendulum-v1", policy="driving_vla", hidden_size=32)
    with pytest.raises(ConfigError, match=r"env_id=.*; PPOConfig\.hidden_size=32"):
        PPOTrainer(_model(), EmbeddedVectorEnv(2, SimulatorConfig()), config)


def test_policy_driving_vla_agrees_with_a_given_model() -> None:
    env = EmbeddedVectorEnv(2, SimulatorConfig())
    # A given model is always a DrivingVLA; policy mlp is the default, i.e. unset.
    assert PPOTrainer(_model(), env, PPOConfig(**SMALL, policy="driving_vla")).uses_driving_vla
    with pytest.raises(ValueError, match=r"policy must be one of mlp, driving_vla"):
        PPOConfig(policy="vla")


def test_size_options_of_the_other_policy_are_refused_in_the_config() -> None:
    with pytest.raises(ValueError, match=r"net_arch=\[32\] sets the layers of the mlp policy"):
        PPOConfig(policy="driving_vla", net_arch=[32])
    with pytest.raises(ValueError, match=r"hidden_size=32 sizes the DrivingVLA of policy"):
        PPOConfig(hidden_size=32)
    with pytest.raises(ValueError, match=r"net_arch must be one or more positive"):
        SACConfig(net_arch=[0])


def test_sac_qf_net_arch_is_refused_for_the_mlp_it_cannot_size() -> None:
    env = EmbeddedVectorEnv(2, SimulatorConfig())
    small = {"buffer_size": 1_000, "batch_size": 32, "device": "cpu", "num_envs": 2}
    with pytest.raises(ConfigError, match=r"SACConfig\.qf_net_arch=\[32\] sets the critic"):
        SACTrainer(SACConfig(**small, qf_net_arch=[32]), env)
    # With a model (or policy driving_vla) it sizes the critics after DrivingVLA's features.
    tanh = DrivingVLA(DrivingVLAConfig(hidden_size=32, control_activation="tanh"))
    trainer = SACTrainer(tanh, env, SACTrainingConfig(**small, qf_net_arch=[32]))
    assert trainer.model.policy.critic.qf0[0].out_features == 32


def test_defaults_and_old_saved_values_still_train_a_given_model(tmp_path: Path) -> None:
    # Seed 001's configs and run configs saved before this check hold the build options'
    # defaults (driving.yaml also policy: driving_vla): they keep working, and resuming.
    env = EmbeddedVectorEnv(2, SimulatorConfig())
    old = tmp_path / "config.yaml"
    old.write_text("rl:\n  ppo:\n    env_id: CartPole-v1\n    policy: driving_vla\n"
                   "    net_arch: [64, 64]\n    hidden_size: 256\n    n_steps: 32\n"
                   "    batch_size: 32\n    device: cpu\n")
    saved = load_config(DrivingRunConfig, files=[old]).rl.ppo
    for config in (PPOConfig(**SMALL), saved):
        assert PPOTrainer(_model(), env, config).uses_driving_vla


def test_training_config_holds_only_hyper_parameters() -> None:
    names = set(PPOTrainingConfig.__dataclass_fields__)
    assert not names & {"env_id", "policy", "net_arch", "hidden_size"}
    assert {"n_steps", "clip_range", "n_epochs"} <= names
    assert PPOTrainingConfig(num_steps=16, batch_size=16).n_steps == 16  # seed alias kept
    assert not set(SACTrainingConfig.__dataclass_fields__) & {"env_id", "policy", "net_arch"}
    trainer = PPOTrainer(_model(), EmbeddedVectorEnv(2, SimulatorConfig()),
                         PPOTrainingConfig(**SMALL))
    assert trainer.uses_driving_vla and trainer.model.n_steps == 32
