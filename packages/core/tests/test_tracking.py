"""W&B is checked before any work: offline and disabled need no key, online without one is a
single line naming WANDB_API_KEY and WANDB_MODE=offline, a missing wandb names its extra.

Nothing here reaches the network: HOME, the W&B settings and the working directory are a
temporary directory, and no test starts a run online."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from trainyard_core.config import ConfigError
from trainyard_core.tracking import TrackingConfig, check_wandb, make_run_dir, start_wandb

ON = TrackingConfig(use_wandb=True)
KEY = "0123456789abcdef0123456789abcdef01234567"  # the shape of a key; never sent anywhere


@pytest.fixture(autouse=True)
def bare_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No W&B variables, settings, netrc or key: a fresh user's machine."""
    for name in list(os.environ):
        if name.startswith("WANDB_") or name == "NETRC":
            monkeypatch.delenv(name)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(home / ".config" / "wandb"))
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb-dir"))
    monkeypatch.chdir(tmp_path)
    return home


def test_off_needs_nothing() -> None:
    assert check_wandb(TrackingConfig()) is None


def test_online_without_a_key_is_one_line_naming_the_fixes() -> None:
    with pytest.raises(ConfigError) as info:
        check_wandb(ON)
    message = str(info.value)
    assert "\n" not in message
    assert "WANDB_API_KEY" in message and "WANDB_MODE=offline" in message


@pytest.mark.parametrize("mode, expected", [("offline", "offline"), ("dryrun", "offline"),
                                            ("disabled", "disabled")])
def test_offline_and_disabled_need_no_key(monkeypatch: pytest.MonkeyPatch, mode: str,
                                          expected: str) -> None:
    monkeypatch.setenv("WANDB_MODE", mode)
    assert check_wandb(ON) == expected


def test_workspace_settings_offline_is_respected(tmp_path: Path) -> None:
    # What `wandb offline` writes in the working directory.
    (tmp_path / "wandb").mkdir()
    (tmp_path / "wandb" / "settings").write_text("[default]\nmode = offline\n")
    assert check_wandb(ON) == "offline"


def test_online_with_a_key_from_the_environment_or_netrc(monkeypatch: pytest.MonkeyPatch,
                                                         bare_home: Path) -> None:
    monkeypatch.setenv("WANDB_API_KEY", KEY)
    assert check_wandb(ON) == "online"
    monkeypatch.delenv("WANDB_API_KEY")
    import wandb

    from trainyard_core.tracking import _wandb_settings

    host = _wandb_settings(wandb).base_url.split("://", 1)[1]
    netrc = bare_home / ".netrc"
    netrc.write_text(f"machine {host}\n  login user\n  password {KEY}\n")
    netrc.chmod(0o600)
    assert check_wandb(ON) == "online"


def test_a_mode_wandb_does_not_know_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "")
    with pytest.raises(ConfigError, match=r"WANDB_MODE='' is not a W&B mode"):
        check_wandb(ON)


def test_missing_wandb_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "wandb", None)  # what `import wandb` meets when absent
    with pytest.raises(ConfigError, match=r"wandb is not installed: pip install 'pkg\[wandb\]'"):
        check_wandb(ON, extra="pkg[wandb]")
    with pytest.raises(ConfigError, match=r"trainyard-core\[wandb\]"):
        start_wandb(ON, Path("unused"), {})


def test_disabled_run_logs_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("WANDB_MODE", "disabled")
    run_dir = make_run_dir(tmp_path / "runs", "x")
    run = start_wandb(ON, run_dir, {"a": 1})
    assert run is not None
    run.log({"loss": 1.0})
    run.finish()
    assert list(run_dir.iterdir()) == []
