"""The shared config mechanism: layering, type checks and errors that name the input."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from trainyard_core.config import ConfigError, load_config, save_config


@dataclasses.dataclass
class Lora:
    rank: int = 32
    alpha: int = 64


@dataclasses.dataclass
class Train:
    experiment_name: str = "run"
    batch_size: int = 16
    learning_rate: float = 5e-4
    use_lora: bool = True
    resume: str | None = None
    lora: Lora = dataclasses.field(default_factory=Lora)

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")


def test_defaults_then_files_then_overrides(tmp_path: Path) -> None:
    first = tmp_path / "a.yaml"
    first.write_text("batch_size: 8\nlora: {rank: 4}\n")
    second = tmp_path / "b.yaml"
    second.write_text("batch_size: 2\n")
    cfg = load_config(Train,
                      files=[first, second],
                      overrides=["lora.alpha=3", "learning_rate=1e-3"])
    assert cfg == Train(batch_size=2, learning_rate=1e-3, lora=Lora(rank=4, alpha=3))


def test_string_values_are_kept_verbatim() -> None:
    cfg = load_config(Train, overrides=["experiment_name=yes", "resume=1e3"])
    assert cfg.experiment_name == "yes"
    assert cfg.resume == "1e3"


def test_optional_field_accepts_null() -> None:
    assert load_config(Train, overrides=["resume=null"]).resume is None


def test_unknown_key_names_it_and_suggests() -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'lora\.rnk'.*lora\.rank"):
        load_config(Train, overrides=["lora.rnk=3"])


def test_bad_value_names_key_and_expected_type() -> None:
    with pytest.raises(ConfigError, match=r"batch_size=abc.*expected int"):
        load_config(Train, overrides=["batch_size=abc"])


def test_override_without_equals_is_refused() -> None:
    with pytest.raises(ConfigError, match="not of the form key=value"):
        load_config(Train, overrides=["batch_size"])


def test_section_cannot_be_overwritten_whole() -> None:
    with pytest.raises(ConfigError, match=r"sets the section 'lora'"):
        load_config(Train, overrides=["lora=3"])


def test_post_init_validation_runs_on_merged_values() -> None:
    with pytest.raises(ConfigError, match="batch_size must be >= 1"):
        load_config(Train, overrides=["batch_size=0"])


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(Train, files=[tmp_path / "missing.yaml"])
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match=r"list\.yaml.*must hold a mapping"):
        load_config(Train, files=[listing])
    typo = tmp_path / "typo.yaml"
    typo.write_text("batch_sise: 3\n")
    with pytest.raises(ConfigError, match=r"typo\.yaml.*batch_sise"):
        load_config(Train, files=[typo])


def test_saved_config_loads_back(tmp_path: Path) -> None:
    cfg = Train(experiment_name="x", resume="ckpt", lora=Lora(rank=2))
    path = save_config(cfg, tmp_path / "cfg.yaml")
    assert load_config(Train, files=[path]) == cfg
    assert [p.name for p in tmp_path.iterdir()] == ["cfg.yaml"]
