"""The level rules end to end: the simulator's two endpoints over HTTP, the real daemon, a real
Redis, then `gex-alertd replay` over the stored streams giving the same alert ids.

One scripted step per rule type, each rule watching its symbol and a quiet one (XLE):
  SPY `wall` -> wall_shift; QQQ `approach` to the flip and away -> level_proximity (entry, then
  a resolved exit); IWM `flip_status` (flip withheld 10 s) -> flip_guard (firing, resolved);
  DIA `drift` -> repositioning against the settled profile the daemon fetched from
  `/v1/exposure/gex` and cached in Redis. The simulation moves tick by tick on a manual clock,
  only once the daemon has stored every symbol's snapshot of the tick (as in test_rules_e2e).
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections import Counter
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import redis.asyncio as aioredis
from click.testing import CliRunner

from gex_alertd import keys
from gex_alertd.cli import main
from gex_alertd.config import SimulatorOptions
from gex_alertd.connections import entries
from gex_alertd.sources.simulator.clock import ManualClock
from gex_alertd.sources.simulator.embedded import make_app, serve
from gex_alertd.sources.simulator.server import SIMULATOR
from tests.e2e.stepped import START, Stepper, calm_scenario, outbox_alerts, start_daemon
from tests.support.redis_server import RedisServer
from tests.support.wait import WAIT_S

SCENARIO = calm_scenario(
    {"SPY": 600, "QQQ": 520, "IWM": 240, "DIA": 450, "XLE": 90},
    """
  - {at: 0s, do: cross_flip, symbol: QQQ, side: above, gap_pct: 1.0}
  - {at: 6s, do: wall, symbol: SPY, wall: call, move_pct: 2}
  - {at: 6s, do: approach, symbol: QQQ, level: flip, side: above, gap_pct: 0.05}
  - {at: 6s, do: flip_status, symbol: IWM, status: no_boundary, duration: 8s}
  - {at: 6s, do: drift, symbol: DIA, pct: 40, over_s: 4s}
  - {at: 14s, do: cross_flip, symbol: QQQ, side: above, gap_pct: 1.0}
""",
)
CONFIG = """
source: {{kind: flowgex, base_url: "http://127.0.0.1:{port}", api_key: e2e-key, timeout_s: 30,
          requests_per_min: 100000}}
redis: {{url: "{redis}", retention: 1d}}
watch: {{interval_s: 0.1, jitter_s: 0, market_hours: always, symbols: [SPY, QQQ, IWM, DIA, XLE]}}
channels: {{tty: {{type: console}}}}
rules:
  - {{name: walls, type: wall_shift, symbols: [SPY, XLE], wall: call, confirm: 2,
     min_move_pct: 1, channels: [tty]}}
  - {{name: near-flip, type: level_proximity, symbols: [QQQ, XLE], level: flip,
     within_pct: 0.3, band_pct: 0.1, on_exit: true, channels: [tty]}}
  - {{name: flip-guard, type: flip_guard, symbols: [IWM, XLE], for: 4s, channels: [tty]}}
  - {{name: repo, type: repositioning, symbols: [DIA, XLE], min_pct: 20, within_pct: 3,
     channels: [tty]}}
ops: {{listen: null, log_format: json}}
"""
EXPECTED = {
    ("walls", "SPY", "firing"),
    ("near-flip", "QQQ", "firing"),
    ("near-flip", "QQQ", "resolved"),
    ("flip-guard", "IWM", "firing"),
    ("flip-guard", "IWM", "resolved"),
    ("repo", "DIA", "firing"),
}
SYMBOLS = ["SPY", "QQQ", "IWM", "DIA", "XLE"]


@pytest.mark.timeout(WAIT_S * 4)
async def test_level_rules_fire_live_and_replay_gives_the_same_ids(
    tmp_path: Path, private_redis: RedisServer
) -> None:
    clock = ManualClock()
    app = make_app(SimulatorOptions(cache_s=0, rate_limit_per_min=0), "e2e-key", SCENARIO,
                   clock=clock)  # fmt: skip
    for sym in SYMBOLS:
        app[SIMULATOR].market(sym)
    sim = await serve(app)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(CONFIG.format(port=sim.port, redis=private_redis.url))
    r = aioredis.Redis.from_url(private_redis.url)
    for sym in SYMBOLS:  # an observer group holds back the outbox trim: we see every entry
        await r.xgroup_create(keys.outbox(sym), "e2e-observer", id="0", mkstream=True)
    log = tmp_path / "daemon.log"
    daemon = await start_daemon(cfg, log)
    try:
        await Stepper(clock, r, log, SYMBOLS).run_to(24, daemon)
        daemon.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(daemon.wait(), WAIT_S) == 0
        live = await outbox_alerts(r)
        settled = await r.keys("gex:{DIA}:settled:*")
        first = entries(await r.xrange(keys.snap("SPY"), count=1))[0][1]
    finally:
        if daemon.returncode is None:
            daemon.kill()
            await daemon.wait()
        await r.aclose()
        await sim.close()
    got = Counter((e["rule"], e["symbol"], e["status"]) for e in live)
    assert got == Counter(EXPECTED), (got, log.read_text()[-3000:])
    day = START.astimezone(ZoneInfo("America/New_York")).date().isoformat()  # the exchange's
    assert settled == [f"gex:{{DIA}}:settled:{day}".encode()]
    assert first[b"call_wall"] and first[b"put_wall"]  # readable scalar fields of each entry
    for e in live:
        assert {"regime", "flip_distance_pct", "call_wall", "put_wall"} <= set(e["details"])
    (wall,) = [e for e in live if e["rule"] == "walls"]
    assert wall["details"]["to"] > wall["details"]["from"]
    # replay over the stored streams: the same events, ids included, nothing sent
    out = tmp_path / "replayed.jsonl"
    res = await asyncio.to_thread(
        CliRunner().invoke, main, ["replay", "-c", str(cfg), "--out", str(out), "--no-progress"]
    )
    assert res.exit_code == 0, res.output
    replayed = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(e["id"] for e in replayed) == sorted(e["id"] for e in live)
    assert sorted(replayed, key=lambda e: e["id"]) == sorted(live, key=lambda e: e["id"])
