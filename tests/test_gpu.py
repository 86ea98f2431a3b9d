"""CUDA checks, run by the self-hosted GPU workflow (marker `gpu`)."""

from __future__ import annotations

import pytest
import torch

from trainers_rl import PPOConfig, PPOTrainer

pytestmark = pytest.mark.gpu


def test_cuda_build_of_torch_computes() -> None:
    assert torch.cuda.is_available()
    a = torch.randn(256, 256, device="cuda")
    torch.testing.assert_close((a @ a.T).cpu(), a.cpu() @ a.cpu().T, rtol=1e-3, atol=1e-3)


def test_ppo_trains_on_cuda() -> None:
    trainer = PPOTrainer(
        PPOConfig(num_envs=2, num_steps=64, batch_size=64, total_timesteps=256, device="cuda"))
    trainer.train(progress_bar=False)
    assert trainer.model.device.type == "cuda"
    assert trainer.model.num_timesteps >= 256
