"""Every package's console command is installed and answers --help."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import trainyard_ci_packages as ci_packages

COMMANDS = {
    "carla-env": ["config", "check", "baselines"],
    "carla-server": ["start", "stop", "status", "logs", "kill", "restart", "help"],
    "driving-vla": ["inspect", "export"],
    "trainers-rl": ["ppo", "record-demos", "bc"],
    "vla-finetune": ["inspect"],
    "env-servers": ["serve", "check"],
    "model-merger": ["inspect"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_lists_subcommands(command: str) -> None:
    executable = Path(sys.executable).parent / command
    result = subprocess.run([str(executable), "--help"],
                            capture_output=True,
                            text=True,
                            timeout=120,
                            check=False)
    assert result.returncode == 0, result.stderr
    for sub in COMMANDS[command]:
        assert sub in result.stdout
        sub_help = subprocess.run([str(executable), sub, "--help"],
                                  capture_output=True,
                                  text=True,
                                  timeout=120,
                                  check=False)
        assert sub_help.returncode == 0, sub_help.stderr
        assert "usage:" in sub_help.stdout


def test_every_console_command_of_every_package_is_checked() -> None:
    declared = {
        s for p in ci_packages.load(Path(__file__).resolve().parent.parent) for s in p.scripts
    }
    assert declared == set(COMMANDS)
