"""Arguments out of range are usage errors (exit 64) naming the option, before anything is
read or sent: before, Redis refused them and the command said so as a Redis failure (exit 1:
`--from 0001-01-01`'s negative stream ID, `--limit 0`, `--last -5`), `tail` followed a key no
symbol or expiry can have for ever, saying nothing, and `--baseline` / `simulate --port` ended
in a traceback. And `reload` never signals pid 0 or below (a process group, or every process).
Real commands as subprocesses; the config's Redis is a port nothing listens on, so a command
that got past its arguments fails differently (exit 1)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.redis_server import free_port
from tests.support.wait import WAIT_S


def _gex(*args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gex_alertd", *args],
        capture_output=True, text=True, timeout=WAIT_S, check=False, **kw,  # type: ignore[call-overload]  # the same keywords
    )  # fmt: skip


@pytest.fixture
def cfg(tmp_path: Path) -> str:
    path = tmp_path / "c.yaml"
    path.write_text(
        f"redis: {{url: 'redis://127.0.0.1:{free_port()}/0'}}\nwatch: {{symbols: [SPY]}}\n"
        "channels: {tty: {type: console}}\n"
    )
    return str(path)


CASES = [
    (["replay", "--from", "0001-01-01"], "'0001-01-01' is before 1970-01-01"),
    (["replay", "--from", "99999d"], "'99999d' is before 1970-01-01"),
    (["outcomes", "--from", "0001-01-01"], "'0001-01-01' is before 1970-01-01"),
    (["outbox", "list", "--limit", "0"], "'--limit': 0 is not in the range 1<=x<=100000"),
    (["tail", "SPY", "--last", "-5"], "'--last': -5 is not in the range 0<=x<=100000"),
    (["tail", "SPY", "--expiry", "2026-13-45"], "expected a date, YYYY-MM-DD, got '2026-13-45'"),
    (["tail", "S{P}Y"], "not a ticker symbol: 'S{P}Y'"),
    (["outcomes", "--baseline", "100000000000"], "'--baseline': 100000000000 is not in the range"),
]


@pytest.mark.parametrize(
    ("args", "says"), CASES, ids=lambda v: " ".join(v) if isinstance(v, list) else ""
)
def test_an_argument_out_of_range_is_a_usage_error(cfg: str, args: list[str], says: str) -> None:
    done = _gex(args[0], "-c", cfg, *args[1:])
    assert done.returncode == 64, done.stderr
    assert says in done.stderr
    assert "Traceback" not in done.stderr and "Redis" not in done.stderr


def test_simulate_refuses_a_port_out_of_range() -> None:
    done = _gex("simulate", "--port", "99999")
    assert done.returncode == 64, done.stderr
    assert "'--port': 99999 is not in the range 0<=x<=65535" in done.stderr


@pytest.mark.parametrize("pid", [0, -1])
def test_reload_never_signals_a_process_group(pid: int) -> None:
    assert _gex("reload", "--pid", str(pid), "--status-file", "/nonexistent").returncode == 64


def test_reload_refuses_a_status_file_naming_pid_0(tmp_path: Path) -> None:
    """A damaged or hostile status file: kill(0, SIGHUP) would hit reload's whole process
    group (the test runs it in a session of its own, so before the fix it only killed itself)."""
    status = tmp_path / "reload.json"
    status.write_text(json.dumps({"pid": 0, "requested": 0, "done": 0}))
    done = _gex("reload", "--status-file", str(status), start_new_session=True)
    assert done.returncode != -signal.SIGHUP
    assert done.returncode == 1, done.stderr
    assert f"cannot read the reload status {status}" in done.stderr and ">= 1" in done.stderr
