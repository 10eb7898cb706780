"""The rule engine end to end: the simulator's HTTP server, the real daemon, a real Redis.

Scripted scenario: a flip cross down (SPY), a flip cross up (QQQ), a net GEX sign change
(IWM), an OI jump (DIA) and a quiet symbol (XLE) that every rule watches. Each rule watches its
scripted symbol and XLE only: the IWM put wave also moves IWM's flip and OI, which are real
changes but not what this test scripts. Every expected alert must be committed to
the outbox exactly once and nothing on the quiet symbol, also when the daemon is SIGKILLed in
the middle and restarted (the simulation moves on while it is down).

The simulator runs in this process on a manual clock that the test moves tick by tick, so
which ticks the daemon sees does not depend on how fast the machine is.
"""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from gex_alertd import keys
from gex_alertd.config import SimulatorOptions
from gex_alertd.sources.simulator.clock import ManualClock
from gex_alertd.sources.simulator.embedded import make_app, serve
from gex_alertd.sources.simulator.server import SIMULATOR
from tests.e2e.stepped import Stepper, calm_scenario, outbox_alerts, start_daemon
from tests.support.redis_server import RedisServer
from tests.support.wait import WAIT_S

SCENARIO = calm_scenario(
    {"SPY": 600, "QQQ": 520, "IWM": 240, "DIA": 450, "XLE": 90},
    """
  - {at: 0s, do: cross_flip, symbol: SPY, side: above, gap_pct: 1.0}
  - {at: 0s, do: cross_flip, symbol: QQQ, side: below, gap_pct: 1.0}
  - {at: 12s, do: cross_flip, symbol: SPY, side: below, gap_pct: 1.0}
  - {at: 20s, do: net_sign, symbol: IWM, to: negative, over_s: 8s, width_pct: 4}
  - {at: 44s, do: block, symbol: DIA, contracts: 20000, right: call, strike: atm}
  - {at: 52s, do: cross_flip, symbol: QQQ, side: above, gap_pct: 1.0}
""",
)
CONFIG = """
source: {{kind: flowgex, base_url: "http://127.0.0.1:{port}", api_key: e2e-key, timeout_s: 30,
          requests_per_min: 100000}}
redis: {{url: "{redis}", retention: 1d}}
watch: {{interval_s: 0.1, jitter_s: 0, market_hours: always, symbols: [SPY, QQQ, IWM, DIA, XLE]}}
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


SYMBOLS = ["SPY", "QQQ", "IWM", "DIA", "XLE"]
KEY = "e2e-key"


def _key(ev: dict) -> tuple[str, str, str | None]:
    return ev["rule"], ev["symbol"], ev["details"].get("direction")


@pytest.mark.timeout(WAIT_S * 4)
async def test_scripted_alerts_exactly_once_across_sigkill(
    tmp_path: Path, private_redis: RedisServer
) -> None:
    clock = ManualClock()
    options = SimulatorOptions(cache_s=0, rate_limit_per_min=0)
    app = make_app(options, KEY, SCENARIO, clock=clock)
    for sym in SYMBOLS:
        app[SIMULATOR].market(sym)
    sim = await serve(app)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(CONFIG.format(port=sim.port, redis=private_redis.url))
    r = aioredis.Redis.from_url(private_redis.url)
    # an observer group that never acknowledges holds back outbox trimming: we see every entry
    for sym in SYMBOLS:
        await r.xgroup_create(keys.outbox(sym), "e2e-observer", id="0", mkstream=True)
    log = tmp_path / "daemon.log"
    step = Stepper(clock, r, log, SYMBOLS)
    daemon = None
    try:
        daemon = await start_daemon(cfg, log)
        # the SPY cross (sim 12s) is in; kill the daemon before the IWM sign change completes
        await step.run_to(14, daemon)
        before_kill = {_key(e) for e in await outbox_alerts(r)}
        assert ("flip", "SPY", "down") in before_kill, log.read_text()[-3000:]
        daemon.send_signal(signal.SIGKILL)
        await asyncio.wait_for(daemon.wait(), WAIT_S)
        assert ("flip", "QQQ", "up") not in before_kill  # the kill is in the middle
        clock.advance(4.0)  # down for 4 simulated seconds
        daemon = await start_daemon(cfg, log)
        # past the last event (QQQ at 52s), and 8 more seconds: a duplicate would show now
        await step.run_to(60, daemon)
        assert {_key(e) for e in await outbox_alerts(r)} >= EXPECTED, log.read_text()[-3000:]
        daemon.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(daemon.wait(), WAIT_S) == 0
        alerts = await outbox_alerts(r)
    finally:
        if daemon is not None and daemon.returncode is None:
            daemon.kill()
            await daemon.wait()
        await r.aclose()
        await sim.close()
    counts = Counter(_key(e) for e in alerts)
    assert counts == Counter(EXPECTED), counts
    assert len({e["id"] for e in alerts}) == len(alerts)
    assert not [e for e in alerts if e["symbol"] == "XLE"]
