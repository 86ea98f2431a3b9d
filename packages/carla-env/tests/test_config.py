"""SimulatorConfig refuses settings CARLA cannot run, naming the setting."""

from __future__ import annotations

import pytest

from carla_env.config import SimulatorConfig
from trainyard_core.config import ConfigError, load_config


def test_seed_defaults_are_valid() -> None:
    cfg = SimulatorConfig()
    assert cfg.backend == "embedded"
    assert cfg.substeps == 2


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("backend=unreal", "backend must be one of embedded, carla"),
        ("physics_dt=0.05", "exceeds CARLA's largest sub-step"),
        ("control_dt=0.5", "CARLA allows at most 16"),
        ("control_dt=0.025", "whole multiple of physics_dt"),
        ("carla_port=70000", "carla_port must be in 1..65535"),
    ],
)
def test_invalid_settings_are_refused(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(SimulatorConfig, overrides=[override])


def test_substeps_follow_the_timing() -> None:
    cfg = load_config(SimulatorConfig, overrides=["physics_dt=0.01", "control_dt=0.1"])
    assert cfg.substeps == 10
