"""compose/compose.yaml: the seeds' profiles, and .env.example documents every variable."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "compose" / "compose.yaml").read_text())


def test_profiles_of_the_seeds_exist() -> None:
    profiles = {p for service in COMPOSE["services"].values() for p in service.get("profiles", [])}
    assert {
        "train", "simulation", "evaluation", "env", "eval", "model-merger", "formatter", "notebook",
        "tensorboard"
    } <= profiles


def test_carla_service_is_headless_healthchecked_and_on_a_gpu() -> None:
    carla = COMPOSE["services"]["carla"]
    assert carla["image"] == "carlasim/carla:0.9.16"
    assert {"-RenderOffScreen", "-nosound"} <= set(carla["command"])
    assert "2000" in " ".join(carla["healthcheck"]["test"])
    assert carla["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    waiting = COMPOSE["services"]["train-carla"]["depends_on"]["carla"]
    assert waiting["condition"] == "service_healthy"


def test_notebook_token_has_no_default() -> None:
    notebook = COMPOSE["services"]["notebook"]
    assert notebook["environment"]["JUPYTER_TOKEN"] == "${JUPYTER_TOKEN:-}"
    assert 'test -n "$$JUPYTER_TOKEN"' in notebook["command"][-1]


def test_env_example_lists_every_variable_and_holds_no_secret() -> None:
    text = (ROOT / "compose" / "compose.yaml").read_text()
    used = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", text))
    example = (ROOT / ".env.example").read_text()
    documented = dict(
        line.split("=", 1) for line in example.splitlines() if line and not line.startswith("#"))
    assert used <= set(documented), sorted(used - set(documented))
    for secret in ("WANDB_API_KEY", "HF_TOKEN", "OPENAI_API_KEY", "JUPYTER_TOKEN"):
        assert documented[secret] == "", f"{secret} must be empty in .env.example"


def test_training_services_run_the_main_job_and_evaluation() -> None:
    services = COMPOSE["services"]
    assert services["train"]["command"][:4] == [
        "trainers-rl", "train", "--config", "configs/train/driving.yaml"
    ]
    assert services["train-carla"]["command"][:4] == [
        "trainers-rl", "train", "--config", "configs/train/driving_carla.yaml"
    ]
    assert services["train-carla"]["environment"]["CARLA_HOST"] == "carla"
    evaluation = services["evaluation"]
    assert evaluation["profiles"] == ["evaluation"]
    assert evaluation["image"] == services["train"]["image"]
    assert "exec trainers-rl evaluate --model" in evaluation["command"][-1]
    for name in ("train", "train-carla", "evaluation"):
        assert "../configs:/workspace/configs:ro" in services[name]["volumes"], name
