"""SAC trains DrivingVLA (or SB3's MLP); checkpoints resume bit for bit; configs name bad fields."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from carla_env import SimulatorConfig
from carla_env.embedded import EmbeddedVectorEnv
from driving_vla import DrivingVLA, DrivingVLAConfig
from trainers_rl.rl.policies import sac_policy_kwargs
from trainers_rl.rl.ppo import PPOConfig, PPOTrainer
from trainers_rl.rl.sac import SACConfig, SACTrainer, SACTrainingConfig
from trainyard_core.config import ConfigError, load_config

SIM = SimulatorConfig(max_episode_steps=50)


def _small(**overrides: Any) -> SACTrainingConfig:
    """SAC hyper-parameters that update after 64 random steps, with small critics, on the CPU
    (the model passed in decides the actor's size)."""
    fields: dict[str, Any] = {
        "num_envs": 4,
        "buffer_size": 1_000,
        "learning_starts": 64,
        "batch_size": 32,
        "qf_net_arch": [64, 64],
        "device": "cpu",
    }
    return SACTrainingConfig(**{**fields, **overrides})


# Training runs in fresh processes with one torch thread: two threads on a busy 2-core machine
# make SAC's many small updates 10-20x slower, and a resumed run needs fresh global RNGs.
_SCRIPT = """
import json
import sys
from pathlib import Path

import numpy as np
import torch

from carla_env import SimulatorConfig
from carla_env.embedded import EmbeddedVectorEnv
from driving_vla import DrivingVLA, DrivingVLAConfig
from trainers_rl.rl.sac import SACConfig, SACTrainer, SACTrainingConfig

torch.set_num_threads(1)  # the same float arithmetic in every run
mode, out = sys.argv[1], Path(sys.argv[2])
SMALL = dict(num_envs=4, buffer_size=1_000, learning_starts=64, batch_size=32, device="cpu")


def actor_params(trainer):
    return {k: v.clone() for k, v in trainer.model.policy.actor.state_dict().items()}


def rollout(trainer, sim):
    # SB3's deterministic actions on a fresh env, for the test to compare against DrivingVLA.
    envs = EmbeddedVectorEnv(6, sim)
    obs, _ = envs.reset(seed=5)
    arrays = {}
    for i in range(8):
        actions, _ = trainer.model.predict(obs, deterministic=True)
        arrays.update({f"{k}_{i}": v for k, v in obs.items()})
        arrays[f"actions_{i}"] = actions
        obs, *_ = envs.step(actions)
    np.savez(out / "rollout.npz", **arrays)


def train(trainer, report):
    before = actor_params(trainer)
    trainer.train(total_timesteps=160, progress_bar=False)
    after = actor_params(trainer)
    report["num_timesteps"] = int(trainer.model.num_timesteps)
    report["changed"] = sorted(k for k in before if not torch.equal(before[k], after[k]))


report = {}
if mode == "driving_vla":
    keys = sys.argv[3].split(",")
    sim = SimulatorConfig(observation_keys=keys, max_episode_steps=50)
    torch.manual_seed(0)
    model = DrivingVLA(DrivingVLAConfig(observation_keys=keys, hidden_size=64,
                                        control_activation="tanh"))
    config = SACTrainingConfig(**SMALL, qf_net_arch=[64, 64])  # the model sizes the actor
    trainer = SACTrainer(model=model, env=EmbeddedVectorEnv(4, sim), config=config)
    policy = trainer.model.policy
    report["uses_driving_vla"] = trainer.uses_driving_vla
    report["mu_shape"] = list(policy.actor.mu.weight.shape)
    report["own_critic_extractor"] = (
        policy.critic.features_extractor is not policy.actor.features_extractor)
    train(trainer, report)
    trainer.save_pretrained(out / "model")
    rollout(trainer, sim)
elif mode == "mlp":
    sim = SimulatorConfig(max_episode_steps=50)
    config = SACConfig(**{**SMALL, "policy": "mlp", "net_arch": [32, 32], "tau": 0.02,
                          "ent_coef": "auto_0.5"})
    trainer = SACTrainer(config, env=EmbeddedVectorEnv(4, sim))
    m = trainer.model
    report["policy"] = type(m.policy).__name__
    report["sb3"] = [m.buffer_size, m.learning_starts, m.batch_size, m.tau, m.target_entropy,
                     float(torch.exp(m.log_ent_coef.detach()))]
    report["uses_driving_vla"] = trainer.uses_driving_vla
    train(trainer, report)
    try:
        trainer.driving_vla()
    except TypeError as exc:
        report["driving_vla_error"] = str(exc)
    rollout(trainer, sim)
else:  # resume: an uninterrupted run with checkpoints, or one resumed from a checkpoint
    config = SACConfig(**{**SMALL, "policy": "driving_vla", "hidden_size": 64,
                          "qf_net_arch": [64, 64], "learning_starts": 96,
                          "total_timesteps": 256, "checkpoint_every": 64,
                          "keep_checkpoints": 10})
    if len(sys.argv) == 3:
        env = EmbeddedVectorEnv(4, SimulatorConfig(max_episode_steps=50))
        trainer = SACTrainer(config, env=env, run_dir=out)
    else:
        trainer = SACTrainer.resume(sys.argv[3], run_dir=out)  # env restored from it
    trainer.train(progress_bar=False)
    state = dict(trainer.model.policy.state_dict())
    state["log_ent_coef"] = trainer.model.log_ent_coef.detach()
    torch.save(state, out / "final.pt")
(out / "report.json").write_text(json.dumps(report))
"""


@pytest.fixture(scope="module")
def script(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sac-script") / "run.py"
    path.write_text(textwrap.dedent(_SCRIPT))
    return path


def _run(script: Path, *args: str | Path) -> dict[str, Any]:
    out = Path(args[1])
    out.mkdir(parents=True, exist_ok=True)
    result = subprocess.run([sys.executable, str(script), *map(str, args)],
                            capture_output=True,
                            text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return dict(json.loads((out / "report.json").read_text()))


def _rollout(out: Path) -> list[tuple[dict[str, np.ndarray], np.ndarray]]:
    data = np.load(out / "rollout.npz")
    steps = []
    for i in range(8):
        obs = {k[:-len(f"_{i}")]: data[k] for k in data.files if k.endswith(f"_{i}")}
        steps.append(({k: v for k, v in obs.items() if k != "actions"}, obs["actions"]))
    return steps


@pytest.mark.parametrize("keys", [["state", "neighbors"], ["camera", "state"]])
def test_sac_trained_driving_vla_round_trips(script: Path, tmp_path: Path, keys: list[str]) -> None:
    report = _run(script, "driving_vla", tmp_path, ",".join(keys))
    assert report["uses_driving_vla"] and report["own_critic_extractor"]
    assert report["mu_shape"] == [3, 64]  # the control head's shape
    assert report["num_timesteps"] == 160
    assert "mu.weight" in report["changed"]
    assert "features_extractor.model.trunk.0.weight" in report["changed"]
    loaded = DrivingVLA.from_pretrained(tmp_path / "model")
    assert loaded.config.control_activation == "tanh"
    for obs, expected in _rollout(tmp_path):
        np.testing.assert_allclose(loaded.act(obs).numpy(), expected, rtol=1e-5, atol=1e-6)


def test_a_clipping_model_is_loaded_into_a_tanh_actor_with_a_warning() -> None:
    torch.manual_seed(0)
    given = DrivingVLA(DrivingVLAConfig(hidden_size=64))  # control_activation="clip"
    with pytest.warns(UserWarning, match="control_activation='clip'"):
        trainer = SACTrainer(model=given, env=EmbeddedVectorEnv(4, SIM), config=_small())
    assert given.config.control_activation == "clip"  # the given model is left alone
    actor = trainer.model.policy.actor
    torch.testing.assert_close(actor.mu.weight, given.control_head.weight, rtol=0, atol=0)
    for name, value in given.state_dict().items():
        torch.testing.assert_close(actor.features_extractor.model.state_dict()[name], value)
    exported = trainer.driving_vla()
    assert exported.config.control_activation == "tanh"


def test_sac_policy_kwargs_refuse_a_clipping_config() -> None:
    with pytest.raises(ValueError, match="control_activation='tanh'"):
        sac_policy_kwargs(DrivingVLAConfig(), [64])


def test_sac_trains_the_mlp_policy(script: Path, tmp_path: Path) -> None:
    report = _run(script, "mlp", tmp_path)
    assert report["policy"] == "MultiInputPolicy"
    # buffer_size, learning_starts, batch_size, tau, target entropy (-action_dim), ent_coef
    assert report["sb3"] == pytest.approx([1_000, 64, 32, 0.02, -3.0, 0.5])
    assert not report["uses_driving_vla"]
    assert "not DrivingVLA" in report["driving_vla_error"]
    assert report["num_timesteps"] == 160
    assert "mu.weight" in report["changed"] and "latent_pi.0.weight" in report["changed"]
    for _, actions in _rollout(tmp_path):
        assert actions.shape == (6, 3)
        assert np.all(actions >= [0, -1, 0]) and np.all(actions <= 1)


@pytest.fixture(scope="module")
def sac_run(script: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted SAC run in a fresh process: checkpoints at 64 (warm-up), 128, 192, 256."""
    full = tmp_path_factory.mktemp("sac-resume")
    _run(script, "resume", full)
    return full


def _assert_resumed_equal(script: Path, full: Path, resumed: Path, step: int) -> None:
    checkpoint = full / "checkpoints" / f"step_{step:09d}"
    assert (checkpoint / "replay_buffer.pkl").is_file() and (checkpoint / "model").is_dir()
    _run(script, "resume", resumed, checkpoint)
    want, got = torch.load(full / "final.pt"), torch.load(resumed / "final.pt")
    assert want.keys() == got.keys()
    differ = [k for k in want if not torch.equal(want[k], got[k])]
    assert not differ, f"resumed from step {step}, these differ: {differ[:5]}"


def test_resumed_sac_run_equals_the_uninterrupted_one(script: Path, sac_run: Path,
                                                      tmp_path: Path) -> None:
    # The first checkpoint after the warm-up (learning_starts=96): from here on SAC draws only
    # from torch's and NumPy's global generators, which the checkpoint restores.
    _assert_resumed_equal(script, sac_run, tmp_path, 128)


def test_resumed_sac_run_equals_the_uninterrupted_one_from_the_warm_up(
        script: Path, sac_run: Path, tmp_path: Path) -> None:
    _assert_resumed_equal(script, sac_run, tmp_path, 64)


def test_resuming_a_ppo_checkpoint_as_sac_names_both(tmp_path: Path) -> None:
    config = PPOConfig(num_envs=2,
                       n_steps=8,
                       batch_size=16,
                       n_epochs=1,
                       total_timesteps=16,
                       device="cpu")
    PPOTrainer(config, env=EmbeddedVectorEnv(2, SIM), run_dir=tmp_path).train(progress_bar=False)
    checkpoint = tmp_path / "checkpoints" / "step_000000016"
    with pytest.raises(ConfigError, match=r"PPO.*SAC") as err:
        SACTrainer.resume(tmp_path)
    assert str(checkpoint) in str(err.value)


@pytest.mark.parametrize(("field", "value"), [
    ("buffer_size", 0),
    ("batch_size", 0),
    ("train_freq", 0),
    ("learning_starts", -1),
    ("gradient_steps", -2),
    ("tau", 0.0),
    ("tau", 1.5),
    ("ent_coef", "sometimes"),
    ("ent_coef", -0.1),
    ("ent_coef", "auto_0"),
    ("target_entropy", float("nan")),
    ("qf_net_arch", [64, 0]),
    ("log_std_init", -1.0),
    ("num_envs", 0),
])
def test_bad_config_names_the_field(field: str, value: Any) -> None:
    with pytest.raises(ValueError, match=field):
        SACConfig(**{field: value})


def test_batch_larger_than_the_buffer_is_refused() -> None:
    with pytest.raises(ValueError, match="batch_size 512 exceeds buffer_size 256"):
        SACConfig(buffer_size=256, batch_size=512)


@pytest.mark.parametrize(("raw", "parsed"), [("auto", "auto"), ("auto_0.1", "auto_0.1"),
                                             ("0.05", 0.05), ("1e-3", 0.001)])
def test_ent_coef_loads_from_the_command_line(raw: str, parsed: float | str) -> None:
    assert load_config(SACConfig, overrides=[f"ent_coef={raw}"]).ent_coef == parsed


def test_ent_coef_error_from_the_command_line_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="ent_coef"):
        load_config(SACConfig, overrides=["ent_coef=plenty"])
