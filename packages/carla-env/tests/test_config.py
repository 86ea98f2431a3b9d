"""SimulatorConfig refuses settings neither backend can run, naming the setting."""

from __future__ import annotations

import pytest

from carla_env.config import SimulatorConfig
from trainyard_core.config import ConfigError, load_config


def test_defaults_are_valid() -> None:
    cfg = SimulatorConfig()
    assert (cfg.backend, cfg.scenario) == ("embedded", "highway")
    assert cfg.substeps == 10
    assert cfg.town == "Town04" and cfg.weather == "ClearNoon"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("backend=unreal", "backend must be one of embedded, carla"),
        ("scenario=desert", "scenario must be one of highway, urban, night, rain"),
        ("carla_town=Town99", "carla_town must be one of"),
        ("carla_weather=Sunny", "carla_weather must be a carla.WeatherParameters preset"),
        ("physics_dt=0.0125 control_dt=0.01", "physics_dt .* must not exceed control_dt"),
        ("image_width=-64", "image_width must be > 0"),
        ("observation_keys=[state,lidar]", r"observation_keys .* unknown \['lidar'\]"),
        ("control_dt=0.5", "CARLA allows at most 16"),
        ("control_dt=0.025", "whole multiple of physics_dt"),
        ("carla_port=70000", "carla_port must be in 1..65535"),
        ("traffic_density=-1", "traffic_density must be >= 0"),
    ],
)
def test_invalid_settings_are_refused(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(SimulatorConfig, overrides=override.split())


def test_physics_step_above_carla_bound() -> None:
    with pytest.raises(ConfigError, match="exceeds CARLA's largest sub-step"):
        load_config(SimulatorConfig, overrides=["physics_dt=0.05", "control_dt=0.1"])


def test_substeps_follow_the_timing() -> None:
    cfg = load_config(SimulatorConfig, overrides=["physics_dt=0.0125", "control_dt=0.05"])
    assert cfg.substeps == 4
