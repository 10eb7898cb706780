"""Alert outcomes end to end: the real daemon on a scripted simulator, a real webhook receiver.

SPY crosses its flip upwards at sim 3 s, then spot jumps 0.5 % up at sim 10 s. The rule
asks for a follow-up 20 s after the alert. The simulator's clock moves only when the test moves
it, one tick after the daemon stored the tick before, so the horizon elapses in simulated time
whatever the machine's speed. The follow-up must reach the receiver exactly once, and the
outcome the daemon stored must equal the one the report computes from the same stream.
"""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from gex_alertd import keys
from gex_alertd.config import SimulatorOptions
from gex_alertd.connections import entries
from gex_alertd.model import decode_alert
from gex_alertd.outcomes import records
from gex_alertd.outcomes.horizons import parse_horizons
from gex_alertd.outcomes.live import follow_up_id
from gex_alertd.outcomes.paths import read_path
from gex_alertd.outcomes.report import compute_report
from gex_alertd.sources.simulator.clock import ManualClock
from gex_alertd.sources.simulator.embedded import make_app, serve
from gex_alertd.sources.simulator.server import SIMULATOR
from tests.e2e.stepped import Stepper, calm_scenario, start_daemon
from tests.notify.support import Receiver
from tests.support.nyse import nyse_sessions
from tests.support.redis_server import RedisServer
from tests.support.wait import WAIT_S, eventually

SCENARIO = calm_scenario(
    {"SPY": 600},
    """
  - {at: 0s, do: cross_flip, symbol: SPY, side: below, gap_pct: 1.0}
  - {at: 3s, do: cross_flip, symbol: SPY, side: above, gap_pct: 1.0}
  - {at: 10s, do: spot, symbol: SPY, move_pct: 0.5}
""",
)
# settle 100 years: the simulated day lies in the past of the wall clock; only the stream may tell
# the daemon that a horizon has elapsed
CONFIG = """
source: {{kind: flowgex, base_url: "http://127.0.0.1:{port}", api_key: e2e-key, timeout_s: 30,
          requests_per_min: 100000}}
redis: {{url: "{redis}", retention: 1d}}
watch: {{interval_s: 0.1, jitter_s: 0, market_hours: always, symbols: [SPY]}}
channels: {{hook: {{type: webhook, url: "{hook}"}}}}
rules:
  - {{name: flip, type: flip_cross, symbols: [SPY], direction: up, band_pct: 0.3,
     channels: [hook], follow_up: [20s]}}
outcomes: {{horizons: [10s, 20s], interval: 0.2s, settle: 36500d}}
ops: {{listen: null, log_format: json}}
"""
KEY = "e2e-key"


def _events(receiver: Receiver) -> list[dict]:
    return [json.loads(h.body) for h in receiver.hits]


@pytest.mark.timeout(WAIT_S * 4)
async def test_follow_up_reaches_the_receiver_once(
    tmp_path: Path, private_redis: RedisServer
) -> None:
    clock = ManualClock()
    app = make_app(SimulatorOptions(cache_s=0, rate_limit_per_min=0), KEY, SCENARIO, clock=clock)
    app[SIMULATOR].market("SPY")
    sim = await serve(app)
    receiver = await Receiver().start()
    cfg = tmp_path / "config.yaml"
    cfg.write_text(CONFIG.format(port=sim.port, redis=private_redis.url, hook=receiver.url))
    r = aioredis.Redis.from_url(private_redis.url)
    log = tmp_path / "daemon.log"
    step = Stepper(clock, r, log, ["SPY"])
    daemon = None
    try:
        daemon = await start_daemon(cfg, log)
        await step.run_to(22, daemon)  # the alert (3 s) plus 20 s, minus one tick
        crossed = [e for e in _events(receiver) if e["type"] == "flip_cross"]
        assert len(crossed) == 1, log.read_text()[-3000:]
        assert not [e for e in _events(receiver) if e["type"] == "outcome"]  # not yet
        await step.run_to(23, daemon)
        alert = crossed[0]

        def follow_ups() -> list[dict]:
            return [e for e in _events(receiver) if e["type"] == "outcome"]

        await eventually(lambda: len(follow_ups()) == 1, "the follow-up at the receiver")
        await eventually(
            lambda: r.hexists(records.outcomes_key("SPY"), alert["id"]), "the stored outcome"
        )
        raw = await r.hget(records.outcomes_key("SPY"), alert["id"])
        await step.run_to(30, daemon)  # more ticks, more duty runs: a repeat would show
        daemon.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(daemon.wait(), WAIT_S) == 0
    finally:
        if daemon is not None and daemon.returncode is None:
            daemon.kill()
            await daemon.wait()
        await sim.close()
        await receiver.stop()
    try:
        (fu,) = follow_ups()
        assert fu["id"] == follow_up_id(alert["id"], "20s") and fu["rule"] == "flip"
        assert fu["details"]["alert_id"] == alert["id"]
        assert fu["summary"].startswith("SPY flip cross up 20 s later: +0.50%, max +0.50/"), fu[
            "summary"
        ]
        outcome = fu["details"]["outcome"]
        assert outcome["status"] == "ok" and outcome["change_pct"] == pytest.approx(0.5, abs=0.01)
        assert isinstance(raw, bytes)
        rec = records.decode(raw)
        path = await read_path(r, "SPY")
        ev = decode_alert(json.dumps(alert))
        report, _ = compute_report(
            [ev], {("SPY", None): path}, parse_horizons("10s,20s"), sessions=nyse_sessions()
        )
        assert report.alerts[0].outcomes == rec.outcomes
        assert rec.outcomes["20s"].change_pct == outcome["change_pct"]
        outbox = [
            decode_alert(f[b"event"]) for _i, f in entries(await r.xrange(keys.outbox("SPY")))
        ]
        assert [e.id for e in outbox if e.type == "outcome"] == [fu["id"]]
    finally:
        await r.aclose()
