"""Ctrl-C (SIGINT) and SIGTERM stop a command half way, every time (daemon/cli_signals.py):
one line, exit 130 / 143, no traceback; what it wrote so far is whole, and a re-run finishes the
job exactly once. Before, SIGINT landing while the command was busy was lost (asyncio's
cancellation, swallowed by a Redis write's wait_for on Python 3.11): `migrate` ran to its end
and exited 0; SIGTERM killed it without a `finally`. `migrate` as a real subprocess against a
real Redis, the signal sent once it has moved some entries and not all."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import redis as sync_redis

from gex_alertd import keys
from gex_alertd.connections import entries
from gex_alertd.model import AlertEvent, outbox_fields
from tests.support.wait import WAIT_S, wait_until

N = 20_000  # legacy entries: seconds of work, so the signal lands in the middle
SYMBOLS = ("SPY", "QQQ", "IWM")


def _legacy(client: sync_redis.Redis) -> None:
    client.flushall()
    client.xgroup_create(keys.LEGACY_ALERTS, keys.notify_group("tty"), id="0", mkstream=True)
    pipe = client.pipeline(transaction=False)
    for n in range(N):
        as_of = "2026-11-24T15:00:00.000Z"
        symbol = SYMBOLS[n % 3]
        event = AlertEvent(
            id=f"a{n}", rule="r", type="flip_cross", symbol=symbol, expiry=None,
            severity="warning", as_of=as_of, fired_at=as_of, summary=f"{symbol} {n}",
        )  # fmt: skip
        pipe.xadd(keys.LEGACY_ALERTS, outbox_fields(event, ["tty"]))
    pipe.execute()


def _moved(client: sync_redis.Redis) -> list[bytes]:
    """The alert ids on the per-symbol outboxes."""
    out: list[bytes] = []
    for symbol in SYMBOLS:
        out += [f[b"id"] for _id, f in entries(client.xrange(keys.outbox(symbol)))]
    return out


def _migrate(cfg: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "gex_alertd", "migrate", "-c", str(cfg)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_migrate_stopped_half_way_stops_and_a_rerun_finishes_once(
    tmp_path: Path, redis_url: str, sig: signal.Signals, code: int
) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"redis: {{url: '{redis_url}'}}\nwatch: {{symbols: [SPY]}}\n"
        "channels: {tty: {type: console}}\n"
    )
    client = sync_redis.Redis.from_url(redis_url)
    try:
        _legacy(client)
        proc = _migrate(cfg)
        try:
            wait_until(lambda: len(_moved(client)) > 0, "migrate moving entries")
            proc.send_signal(sig)
            _out, err = proc.communicate(timeout=WAIT_S)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert err.decode() == f"stopped by {sig.name}\n"
        assert proc.returncode == code
        assert 0 < len(_moved(client)) < N  # stopped half way
        assert client.exists(keys.LEGACY_ALERTS)  # not retired: it still owes the rest

        again = subprocess.run(
            [sys.executable, "-m", "gex_alertd", "migrate", "-c", str(cfg)],
            capture_output=True, timeout=WAIT_S, check=False,
        )  # fmt: skip
        assert again.returncode == 0, again.stderr
        moved = _moved(client)
        assert len(moved) == N and len(set(moved)) == N  # each owed alert once
        assert not client.exists(keys.LEGACY_ALERTS)
    finally:
        client.close()


def test_tail_ends_on_ctrl_c_as_its_way_out(tmp_path: Path, redis_url: str) -> None:
    """`tail` follows until stopped: Ctrl-C is its normal end, exit 0 and nothing said."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"redis: {{url: '{redis_url}'}}\nwatch: {{symbols: [SPY]}}\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gex_alertd", "tail", "-c", str(cfg), "--alerts"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    client = sync_redis.Redis.from_url(redis_url)
    try:
        # following: its client is connected (CLIENT LIST names it)
        wait_until(
            lambda: any(c.get("name") == "gex-alertd-tail" for c in client.client_list()),
            "tail connected",
        )
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=WAIT_S)
    finally:
        client.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0 and err == b""
