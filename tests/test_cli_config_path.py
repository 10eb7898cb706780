"""A config path that is a directory is a bad config like a missing file: every command exits 2
naming the path and the cause (`cannot read: Is a directory`), not 64 (a usage error, which
systemd restarts for ever: the unit's RestartPreventExitStatus=2). Real commands, subprocesses."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.wait import WAIT_S

COMMANDS = [
    ["run"],
    ["check", "--offline"],
    ["outbox", "list"],
    ["silence", "list"],
    ["replay"],
    ["tail", "SPY"],
    ["migrate"],
    ["outcomes"],
    ["notify-test", "--channel", "tty"],
    ["web"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_a_directory_as_the_config_is_a_bad_config(tmp_path: Path, command: list[str]) -> None:
    where = tmp_path / "config.yaml"
    where.mkdir()  # e.g. a bind mount or a ConfigurationDirectory where the file should be
    done = subprocess.run(
        [sys.executable, "-m", "gex_alertd", command[0], "-c", str(where), *command[1:]],
        capture_output=True, text=True, timeout=WAIT_S, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr == f"error: invalid config {where}:\n  cannot read: Is a directory\n"
