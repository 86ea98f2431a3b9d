"""A run killed with SIGKILL resumes from its last checkpoint and ends where an uninterrupted
run ends, bit for bit; resuming from a missing or incompatible checkpoint is a clear error."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from carla_env import SimulatorConfig
from carla_env.embedded import EmbeddedVectorEnv
from driving_vla import DrivingVLA, DrivingVLAConfig
from trainers_rl.rl.ppo import PPOConfig, PPOTrainer, PPOTrainingConfig
from trainyard_core.config import ConfigError

SCRIPT = """
import sys
from pathlib import Path

import torch

from carla_env import SimulatorConfig
from carla_env.embedded import EmbeddedVectorEnv
from trainers_rl.rl.ppo import PPOConfig, PPOTrainer

torch.set_num_threads(1)
run_dir = Path(sys.argv[1])
if len(sys.argv) > 2:  # resume: the environment comes back from the checkpoint too
    trainer = PPOTrainer.resume(run_dir, run_dir=run_dir)
else:
    config = PPOConfig(policy="driving_vla", hidden_size=64, num_envs=4, n_steps=32,
                       batch_size=64, n_epochs=2, total_timesteps=128 * 16,
                       checkpoint_every=128, keep_checkpoints=50, device="cpu", seed=3)
    env = EmbeddedVectorEnv(4, SimulatorConfig(max_episode_steps=60))
    trainer = PPOTrainer(config, env=env, run_dir=run_dir)
trainer.train(progress_bar=False)
torch.save(trainer.model.policy.state_dict(), run_dir / "final.pt")
"""


def _run(script: Path, *args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, str(script), *args], env=env)


def test_sigkilled_run_resumes_to_the_uninterrupted_result(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    reference = _run(script, str(whole))

    victim = _run(script, str(killed))
    target = killed / "checkpoints" / "step_000000512" / "state.json"
    deadline = time.monotonic() + 240
    while not target.exists() and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    victim.send_signal(signal.SIGKILL)
    assert victim.wait(timeout=60) == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (killed / "final.pt").exists()
    assert reference.wait(timeout=300) == 0

    resumed = _run(script, str(killed), "resume")
    assert resumed.wait(timeout=300) == 0
    expected = torch.load(whole / "final.pt")
    actual = torch.load(killed / "final.pt")
    assert expected.keys() == actual.keys()
    for name in expected:
        assert torch.equal(expected[name], actual[name]), name
    # The resumed run wrote on from where it was killed, to the same final step.
    steps = sorted(p.name for p in (killed / "checkpoints").glob("step_*"))
    assert steps[-1] == "step_000002048"


def _trainer(tmp_path: Path, **overrides: object) -> PPOTrainer:
    config = PPOConfig(policy="driving_vla",
                       hidden_size=32,
                       num_envs=2,
                       n_steps=16,
                       batch_size=32,
                       n_epochs=1,
                       total_timesteps=32,
                       device="cpu")
    sim = SimulatorConfig(max_episode_steps=40, **overrides)  # type: ignore[arg-type]
    return PPOTrainer(config, env=EmbeddedVectorEnv(2, sim), run_dir=tmp_path)


def test_resume_from_missing_checkpoint_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'.*nowhere' does not exist"):
        PPOTrainer.resume(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="holds no checkpoint"):
        PPOTrainer.resume(tmp_path)


def test_resume_with_another_observation_space_is_refused(tmp_path: Path) -> None:
    _trainer(tmp_path).train(progress_bar=False)
    other = EmbeddedVectorEnv(2, SimulatorConfig(observation_keys=["state"]))
    with pytest.raises(ConfigError, match=r"incompatible with this environment.*observation"):
        PPOTrainer.resume(tmp_path, env=other)
    more = EmbeddedVectorEnv(3, SimulatorConfig(max_episode_steps=40))
    with pytest.raises(ConfigError, match="2 environments, not 3"):
        PPOTrainer.resume(tmp_path, env=more)


def test_truncated_checkpoint_is_refused(tmp_path: Path) -> None:
    _trainer(tmp_path).train(progress_bar=False)
    (step,) = (tmp_path / "checkpoints").glob("step_*")
    (step / "rng.pkl").unlink()
    with pytest.raises(ConfigError, match=r"incomplete, missing rng\.pkl"):
        PPOTrainer.resume(step)


def test_resumed_trainer_reproduces_saved_policy(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path)
    trainer.train(progress_bar=False)
    resumed = PPOTrainer.resume(tmp_path)
    assert resumed.model.num_timesteps == trainer.model.num_timesteps
    for name, value in trainer.model.policy.state_dict().items():
        assert torch.equal(value, resumed.model.policy.state_dict()[name]), name


def test_resume_on_another_scenario_is_refused(tmp_path: Path) -> None:
    _trainer(tmp_path).train(progress_bar=False)
    urban = EmbeddedVectorEnv(2, SimulatorConfig(max_episode_steps=40, scenario="urban"))
    with pytest.raises(ConfigError, match=r"another simulator config \(changed: scenario\)"):
        PPOTrainer.resume(tmp_path, env=urban)


def test_checkpoint_of_a_training_config_resumes_around_its_model(tmp_path: Path) -> None:
    # The main job's kind of run: hyper-parameters only, model and env given. The saved
    # config has no build options; resume reads it as a PPOConfig with their defaults.
    config = PPOTrainingConfig(num_envs=2,
                               n_steps=16,
                               batch_size=32,
                               n_epochs=1,
                               total_timesteps=32,
                               device="cpu")
    env = EmbeddedVectorEnv(2, SimulatorConfig(max_episode_steps=40))
    model = DrivingVLA(DrivingVLAConfig(hidden_size=32))
    PPOTrainer(model, env, config, tmp_path).train(progress_bar=False)
    resumed = PPOTrainer.resume(tmp_path)
    assert resumed.uses_driving_vla and resumed.model.num_timesteps == 32
    assert resumed.driving_vla().config.hidden_size == 32


def test_saved_config_with_an_option_that_did_nothing_is_refused_by_name(tmp_path: Path) -> None:
    # Before the check, hidden_size next to policy mlp was silently ignored; a checkpoint
    # holding one is named rather than resumed on a different meaning.
    _trainer(tmp_path).train(progress_bar=False)
    (step,) = (tmp_path / "checkpoints").glob("step_*")
    state = json.loads((step / "state.json").read_text())
    state["config"]["policy"] = "mlp"
    (step / "state.json").write_text(json.dumps(state))
    with pytest.raises(ConfigError, match=r"state\.json holds a config .* hidden_size=32"):
        PPOTrainer.resume(step)
