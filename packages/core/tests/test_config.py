"""The shared config mechanism: layering, type checks and errors that name the input."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from trainyard_core.config import (
    ConfigError,
    file_digest,
    load_config,
    peek_value,
    resume_config,
    save_config,
)


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


def _saved_run(tmp_path: Path) -> Path:
    """A run's config.yaml: the base a resumed run is resolved on."""
    return save_config(Train(experiment_name="x", batch_size=8, lora=Lora(rank=4)),
                       tmp_path / "run" / "config.yaml")


def test_resume_config_alone_is_the_saved_config(tmp_path: Path) -> None:
    saved = _saved_run(tmp_path)
    cfg = resume_config(Train, saved, overrides=["resume=run"], free=["resume"])
    assert cfg == Train(experiment_name="x", batch_size=8, resume="run", lora=Lora(rank=4))


def test_resume_refuses_each_change_naming_key_values_and_source(tmp_path: Path) -> None:
    saved = _saved_run(tmp_path)
    other = tmp_path / "other.yaml"
    other.write_text("lora: {rank: 16}\nbatch_size: 8\n")  # batch_size equal: not a change
    with pytest.raises(ConfigError) as info:
        resume_config(Train, saved, files=[other], overrides=["learning_rate=0.1"], free=["resume"])
    message = str(info.value)
    lines = message.splitlines()
    assert "2 setting(s) would change the run" in lines[0] and str(saved) in lines[0]
    assert "a config file the run did not start from counts as given settings" in lines[0]
    assert lines[1:] == [
        "  learning_rate: the run has 0.0005, given 0.1 (from override 'learning_rate=0.1')",
        f"  lora.rank: the run has 4, given 16 (from file {str(other)!r})",
    ]


def test_resume_allows_free_keys_and_growth_only_where_named(tmp_path: Path) -> None:
    saved = _saved_run(tmp_path)
    cfg = resume_config(Train,
                        saved,
                        overrides=["experiment_name=y", "lora.rank=8"],
                        free=["experiment_name"],
                        grow=["lora.*"])
    assert cfg.experiment_name == "y" and cfg.lora.rank == 8
    with pytest.raises(ConfigError, match=r"lora\.rank: the run has 4, given 2 .*may only grow"):
        resume_config(Train, saved, overrides=["lora.rank=2"], grow=["lora.*"])
    with pytest.raises(ConfigError, match=r"batch_size: the run has 8, given 9") as info:
        resume_config(Train, saved, overrides=["batch_size=9"], grow=["lora.*"])
    assert "config file" not in str(info.value)


def test_resume_skips_the_file_the_run_started_from(tmp_path: Path) -> None:
    # The run started from base.yaml plus an override; base.yaml again is no change,
    # although its own batch_size differs from the run's.
    base = tmp_path / "base.yaml"
    base.write_text("experiment_name: x\nbatch_size: 2\n")
    saved = save_config(load_config(Train, files=[base], overrides=["batch_size=8"]),
                        tmp_path / "run" / "config.yaml")
    with pytest.raises(ConfigError, match=r"batch_size: the run has 8, given 2 \(from file"):
        resume_config(Train, saved, files=[base])
    cfg = resume_config(Train, saved, files=[base], same_as_saved=[file_digest(base)])
    assert cfg.batch_size == 8
    base.write_text("experiment_name: z\nbatch_size: 2\n")  # edited since: checked again
    with pytest.raises(ConfigError, match="experiment_name: the run has 'x', given 'z'"):
        resume_config(Train,
                      saved,
                      files=[base],
                      same_as_saved=[file_digest(tmp_path / "run" / "config.yaml")])


def test_peek_value_reads_one_key_from_the_layers(tmp_path: Path) -> None:
    file = tmp_path / "f.yaml"
    file.write_text("resume: from-file\nlora: {rank: 3}\n")
    assert peek_value(Train, "resume") is None
    assert peek_value(Train, "resume", files=[file]) == "from-file"
    assert peek_value(Train, "resume", files=[file], overrides=["resume=cli"]) == "cli"
    assert peek_value(Train, "lora.rank", files=[file]) == 3
    # Other settings are not validated: the full config may be valid only on the run's base.
    assert peek_value(Train, "resume", overrides=["batch_size=0", "resume=r"]) == "r"
