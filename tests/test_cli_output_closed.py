"""Every command whose stdout's reader goes away (`gex-alertd outbox list | head -1`) stops
quietly, as Unix tools do: no message, killed by SIGPIPE (the shell's 141), never "redis:
Broken pipe" with the status of a Redis failure, never a traceback (daemon/closed_stdout.py).
Real commands as subprocesses against a real Redis, their stdout a pipe nobody reads."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import redis as sync_redis

from gex_alertd import keys
from gex_alertd.model import AlertEvent, outbox_fields
from tests.support.cli_config import cli_config
from tests.support.wait import WAIT_S


def _with_an_alert(redis_url: str) -> None:
    """One alert in SPY's outbox, so `tail --alerts --last 1` has a line to print."""
    client = sync_redis.Redis.from_url(redis_url)
    try:
        client.flushall()
        as_of = "2026-11-24T15:00:00.000Z"
        event = AlertEvent(
            id="a1", rule="spy-flip", type="flip_cross", symbol="SPY", expiry=None,
            severity="warning", as_of=as_of, fired_at=as_of, summary="SPY crossed",
        )  # fmt: skip
        client.xadd(keys.outbox("SPY"), outbox_fields(event, ["tty"]))
    finally:
        client.close()


def _run_with_stdout_closed(*args: str) -> subprocess.CompletedProcess[bytes]:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first write: EPIPE on it, every time
    try:
        return subprocess.run(
            [sys.executable, "-m", "gex_alertd", *args],
            stdout=write_end,
            stderr=subprocess.PIPE,
            timeout=WAIT_S,
            check=False,
        )
    finally:
        os.close(write_end)


COMMANDS = [
    ["outbox", "list"],
    ["outbox"],
    ["check"],
    ["check", "--offline"],
    ["replay", "--no-progress"],
    ["tail", "--alerts", "--last", "1"],  # otherwise it follows for ever
    ["silence", "list"],
    ["migrate", "--dry-run"],
    ["notify-test", "--channel", "tty"],  # the console channel prints the sample to stdout
    ["outcomes", "--alerts", "live", "--horizons", "5m"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_a_command_whose_reader_went_away_stops_quietly(
    tmp_path: Path, redis_url: str, command: list[str]
) -> None:
    _with_an_alert(redis_url)
    cfg = cli_config(tmp_path, redis_url, "spy-flip")
    done = _run_with_stdout_closed(command[0], "-c", str(cfg), *command[1:])
    assert done.stderr.decode() == ""
    assert done.returncode == -signal.SIGPIPE


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["schema"], ["outbox", "--help"]])
def test_help_and_schema_stop_quietly_too(args: list[str]) -> None:
    done = _run_with_stdout_closed(*args)
    assert done.stderr.decode() == ""
    assert done.returncode == -signal.SIGPIPE


def test_the_output_is_whole_when_the_reader_reads(tmp_path: Path, redis_url: str) -> None:
    """The guard changes nothing for a reader that reads to the end."""
    _with_an_alert(redis_url)
    cfg = cli_config(tmp_path, redis_url, "spy-flip")
    done = subprocess.run(
        [sys.executable, "-m", "gex_alertd", "outbox", "-c", str(cfg), "list"],
        capture_output=True, timeout=WAIT_S, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode().splitlines() == [
        "PENDING", "  tty: 0 unacknowledged, oldest 0.0s", "DEAD (0)", "SILENCED (0 most recent)"
    ]  # fmt: skip
