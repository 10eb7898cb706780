"""The rule engine end to end: a real simulator process, the real daemon, a real Redis.

Scripted scenario: a flip cross down (SPY), a flip cross up (QQQ), a net GEX sign change
(IWM), an OI jump (DIA) and a quiet symbol (XLE) that every rule watches. Each rule watches its
scripted symbol and XLE only: the IWM put wave also moves IWM's flip and OI, which are real
changes but not what this test scripts. Every expected alert must be committed to
the outbox exactly once and nothing on the quiet symbol, also when the daemon is SIGKILLed in
the middle and restarted (the simulator keeps running, so the QQQ cross may happen while the
daemon is down: it must fire once when it is next seen).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import redis as syncredis

from tests.support.redis_server import RedisServer, free_port

SPEED = 4.0  # simulated seconds per wall second
SCENARIO = """
start: 2026-05-11T14:00:00Z
tick_s: 1
symbols:
  SPY: {spot: 600, annual_vol: 0, trades_per_s: 0}
  QQQ: {spot: 520, annual_vol: 0, trades_per_s: 0}
  IWM: {spot: 240, annual_vol: 0, trades_per_s: 0}
  DIA: {spot: 450, annual_vol: 0, trades_per_s: 0}
  XLE: {spot: 90, annual_vol: 0, trades_per_s: 0}
events:
  - {at: 0s, do: cross_flip, symbol: SPY, side: above, gap_pct: 1.0}
  - {at: 0s, do: cross_flip, symbol: QQQ, side: below, gap_pct: 1.0}
  - {at: 12s, do: cross_flip, symbol: SPY, side: below, gap_pct: 1.0}
  - {at: 20s, do: net_sign, symbol: IWM, to: negative, over_s: 8s, width_pct: 4}
  - {at: 44s, do: block, symbol: DIA, contracts: 20000, right: call, strike: atm}
  - {at: 52s, do: cross_flip, symbol: QQQ, side: above, gap_pct: 1.0}
"""
CONFIG = """
source: {{kind: flowgex, base_url: "http://127.0.0.1:{port}", api_key: e2e-key, timeout_s: 5}}
redis: {{url: "{redis}", retention: 1d}}
watch: {{interval_s: 0.25, jitter_s: 0, market_hours: always, symbols: [SPY, QQQ, IWM, DIA, XLE]}}
channels: {{tty: {{type: console}}}}
rules:
  - {{name: flip, type: flip_cross, symbols: [SPY, QQQ, XLE], direction: any, band_pct: 0.3,
     channels: [tty]}}
  - {{name: sign, type: net_gex_sign, symbols: [IWM, XLE], min_abs: 1e6, channels: [tty]}}
  - {{name: oi, type: oi_change, symbols: [DIA, XLE], basis: poll, min_contracts: 5000,
     within_pct: 5, channels: [tty]}}
ops: {{listen: null, log_format: json}}
"""
EXPECTED = {("flip", "SPY", "down"), ("flip", "QQQ", "up"), ("sign", "IWM", "to_negative"),
            ("oi", "DIA", None)}  # fmt: skip


def _alerts(r: syncredis.Redis) -> list[dict]:
    return [json.loads(f[b"event"]) for _id, f in r.xrange("gex:alerts")]


def _key(ev: dict) -> tuple[str, str, str | None]:
    return ev["rule"], ev["symbol"], ev["details"].get("direction")


def _wait(cond, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.1)
    return False


def _start_daemon(cfg: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "gex_alertd", "run", "--config", str(cfg), "--no-uvloop"],
        stdout=log.open("ab"), stderr=subprocess.STDOUT, env={**os.environ}, cwd=cfg.parent,
    )  # fmt: skip


@pytest.mark.timeout(90)
def test_scripted_alerts_exactly_once_across_sigkill(
    tmp_path: Path, private_redis: RedisServer
) -> None:
    port = free_port()
    (tmp_path / "scenario.yaml").write_text(SCENARIO)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(CONFIG.format(port=port, redis=private_redis.url))
    r = syncredis.Redis.from_url(private_redis.url)
    # an observer group that never acknowledges holds back outbox trimming: we see every entry
    r.xgroup_create("gex:alerts", "e2e-observer", id="0", mkstream=True)
    sim_log, log = tmp_path / "sim.log", tmp_path / "daemon.log"
    sim = subprocess.Popen(
        [sys.executable, "-m", "gex_alertd", "simulate", "--port", str(port), "--scenario",
         "scenario.yaml", "--speed", str(SPEED), "--cache-s", "0", "--api-key", "e2e-key"],
        stdout=sim_log.open("wb"), stderr=subprocess.STDOUT, cwd=tmp_path,
    )  # fmt: skip
    daemon = None
    try:
        assert _wait(lambda: b"simulator on" in sim_log.read_bytes(), 20), sim_log.read_text()
        daemon = _start_daemon(cfg, log)
        # the SPY cross (sim 12s) is in; kill the daemon before the IWM sign change completes
        assert _wait(lambda: ("flip", "SPY", "down") in {_key(e) for e in _alerts(r)}, 30), (
            log.read_text()[-3000:]
        )
        daemon.send_signal(signal.SIGKILL)
        daemon.wait(10)
        before_kill = {_key(e) for e in _alerts(r)}
        assert ("flip", "QQQ", "up") not in before_kill  # the kill is in the middle
        time.sleep(1.0)  # down for ~4 simulated seconds
        daemon = _start_daemon(cfg, log)
        assert _wait(lambda: {_key(e) for e in _alerts(r)} >= EXPECTED, 40), (
            [_key(e) for e in _alerts(r)],
            log.read_text()[-3000:],
        )
        time.sleep(2.0)  # ~8 more simulated seconds: anything duplicated would show up now
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(30) == 0
    finally:
        for p in (daemon, sim):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait(10)
        r.close()
    alerts = _alerts(redis_client := syncredis.Redis.from_url(private_redis.url))
    redis_client.close()
    counts = Counter(_key(e) for e in alerts)
    assert counts == Counter(EXPECTED), counts
    assert len({e["id"] for e in alerts}) == len(alerts)
    assert not [e for e in alerts if e["symbol"] == "XLE"]
