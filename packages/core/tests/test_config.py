"""The shared config mechanism: layering, type checks and errors that name the input."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from trainyard_core.config import (
    ConfigError,
    accepts_aliases,
    file_digest,
    load_config,
    peek_value,
    resume_config,
    save_config,
    to_yaml,
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


@accepts_aliases
@dataclasses.dataclass
class Clip:
    clip_range: float = dataclasses.field(default=0.2,
                                          metadata={"aliases": ("clip_epsilon", "clip")})
    n_epochs: int = dataclasses.field(default=10, metadata={"aliases": ("num_epochs",)})


@dataclasses.dataclass
class Run:
    name: str = "run"
    ppo: Clip = dataclasses.field(default_factory=Clip)


def test_alias_in_yaml_overrides_and_constructor(tmp_path: Path) -> None:
    old = tmp_path / "old.yaml"
    old.write_text("ppo:\n  clip_epsilon: 0.1\n  num_epochs: 3\n")
    assert load_config(Run, files=[old]).ppo == Clip(clip_range=0.1, n_epochs=3)
    assert load_config(Run, overrides=["ppo.clip=0.3"]).ppo.clip_range == 0.3
    # A later layer under the new name wins over an earlier one under the old, as always.
    assert load_config(Run, files=[old], overrides=["ppo.clip_range=0.4"]).ppo.clip_range == 0.4
    assert Clip(clip_epsilon=0.5, num_epochs=2) == Clip(clip_range=0.5, n_epochs=2)
    assert Clip(clip_epsilon=0.5, clip_range=0.5).clip_range == 0.5  # the same value is fine


def test_alias_is_never_a_field_of_its_own(tmp_path: Path) -> None:
    text = to_yaml(load_config(Run, overrides=["ppo.clip_epsilon=0.1"]))
    assert "clip_range: 0.1" in text and "clip_epsilon" not in text
    assert [f.name for f in dataclasses.fields(Clip)] == ["clip_range", "n_epochs"]


def test_name_and_alias_given_differently_is_an_error(tmp_path: Path) -> None:
    both = tmp_path / "both.yaml"
    both.write_text("ppo:\n  clip_epsilon: 0.1\n  clip_range: 0.3\n")
    with pytest.raises(ConfigError,
                       match=r"both\.yaml.*ppo\.clip_epsilon is the old name of ppo\.clip_range"):
        load_config(Run, files=[both])
    with pytest.raises(ConfigError, match=r"ppo\.num_epochs is the old name of ppo\.n_epochs"):
        load_config(Run, overrides=["ppo.num_epochs=2", "ppo.n_epochs=3"])
    with pytest.raises(ValueError, match=r"clip_epsilon=0\.1 and clip_range=0\.3 both given"):
        Clip(clip_epsilon=0.1, clip_range=0.3)
    same = tmp_path / "same.yaml"
    same.write_text("ppo:\n  clip_epsilon: 0.1\n  clip_range: 0.1\n")
    assert load_config(Run, files=[same], overrides=["ppo.n_epochs=3",
                                                     "ppo.num_epochs=3"]).ppo.n_epochs == 3


def test_saved_config_with_old_names_resumes(tmp_path: Path) -> None:
    saved = tmp_path / "config.yaml"
    saved.write_text("name: run\nppo:\n  clip_epsilon: 0.1\n  num_epochs: 4\n")
    cfg = resume_config(Run, saved, overrides=["name=again"], free=("name",))
    assert cfg.ppo == Clip(clip_range=0.1, n_epochs=4) and cfg.name == "again"
    assert peek_value(Run, "ppo.clip_range", [saved]) == 0.1
    assert peek_value(Run, "ppo.clip_range", overrides=["ppo.clip_epsilon=0.7"]) == 0.7
    with pytest.raises(ConfigError,
                       match=r"ppo\.clip_range: the run has 0\.1, given 0\.2 "
                       r"\(from override 'ppo\.clip_epsilon=0\.2'\)"):
        resume_config(Run, saved, overrides=["ppo.clip_epsilon=0.2"])


def test_alias_flags_on_the_command_line() -> None:
    import argparse

    from trainyard_core.cli import add_config_arguments, config_from_args, parse_args

    parser = argparse.ArgumentParser(prog="t")
    add_config_arguments(parser, Run)
    args = parse_args(parser, ["--ppo.clip-epsilon", "0.15", "--ppo.num-epochs", "7"])
    assert config_from_args(Run, args).ppo == Clip(clip_range=0.15, n_epochs=7)
    assert "old name: clip_epsilon, clip" in parser.format_help()
