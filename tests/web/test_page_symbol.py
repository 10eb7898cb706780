"""The symbol page in Debian's chromium, fed by the real daemon (subprocess) polling the
simulator (manual clock, one tick at a time) into a real Redis, and served by the daemon's
own ops server:
  - the page loads with no console error;
  - after the daemon stored N snapshots the heatmap has N time columns;
  - the next snapshot arrives by SSE and the chart grows to N + 1 columns without a reload;
  - the flip-cross alert the simulator's scenario causes appears as a marker, its summary in
    the tooltip on hover;
  - the header shows the regime, net GEX and flip distance of the newest snapshot;
a screenshot of the page is saved.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from gex_alertd import keys, store
from gex_alertd.config import SimulatorOptions
from gex_alertd.connections import entries
from gex_alertd.sources.simulator.clock import ManualClock
from gex_alertd.sources.simulator.embedded import make_app, serve
from gex_alertd.sources.simulator.server import SIMULATOR
from tests.e2e.stepped import Stepper, calm_scenario, start_daemon
from tests.support.browser import open_browser, screenshot_path
from tests.support.redis_server import RedisServer, free_port
from tests.support.wait import WAIT_S, eventually

KEY = "web-key"
SCENARIO = calm_scenario(
    {"SPY": 600},
    """
  - {at: 0s, do: cross_flip, symbol: SPY, side: above, gap_pct: 1.0}
  - {at: 9s, do: cross_flip, symbol: SPY, side: below, gap_pct: 1.0}
""",
)
CONFIG = """
source: {{kind: flowgex, base_url: "http://127.0.0.1:{sim}", api_key: {key}, timeout_s: 30,
          requests_per_min: 100000}}
redis: {{url: "{redis}", retention: 30d}}
watch: {{interval_s: 0.1, jitter_s: 0, market_hours: always, symbols: [SPY]}}
channels: {{tty: {{type: console}}}}
rules:
  - {{name: spy-flip, type: flip_cross, symbols: [SPY], direction: any, band_pct: 0.3,
     channels: [tty]}}
ops: {{listen: "127.0.0.1:{ops}", log_format: json}}
"""
HEAT = "echarts.getInstanceByDom(document.getElementById('heatmap')).getOption()"


async def _columns(tab: Any) -> int:
    return int(await tab.evaluate(f"{HEAT}.xAxis[0].data.length"))


@pytest.mark.timeout(WAIT_S * 4)
async def test_symbol_page_history_live_updates_and_alert_markers(
    tmp_path: Path, private_redis: RedisServer
) -> None:
    clock = ManualClock()
    app = make_app(SimulatorOptions(cache_s=0), KEY, SCENARIO, clock=clock)
    app[SIMULATOR].market("SPY")
    sim = await serve(app)
    ops_port = free_port()
    cfg = tmp_path / "config.yaml"
    cfg.write_text(CONFIG.format(sim=sim.port, key=KEY, redis=private_redis.url, ops=ops_port))
    log = tmp_path / "daemon.log"
    r = aioredis.Redis.from_url(private_redis.url)
    daemon = await start_daemon(cfg, log)
    stepper = Stepper(clock, r, log, ["SPY"])

    async def step_to(t: float) -> None:
        await stepper.run_to(t, daemon)

    try:
        await step_to(5)  # ticks 0..5: six snapshots, before the scenario's cross at 9 s
        stored = await r.xlen(keys.snap("SPY"))
        assert stored == 6
        async with open_browser(tmp_path / "profile") as browser:
            tab = await browser.context.new_page()
            browser.watch(tab)
            await tab.goto(f"http://127.0.0.1:{ops_port}/view?symbol=SPY")
            await tab.wait_for_function(
                "window.gexPage && (window.gexPage.heat.getOption() || {}).xAxis !== undefined"
            )
            await eventually(lambda: _eq(_columns(tab), stored), f"{stored} columns")
            strikes = await tab.evaluate(f"{HEAT}.yAxis[0].data.length")
            grid = await tab.evaluate("window.gexPage.grid")
            # every cell of every column is painted
            assert grid == {"columns": stored, "rows": strikes, "painted": stored * strikes}
            await tab.evaluate("window.__same_document = true")

            # one more snapshot: the chart grows by SSE, in the same document
            await step_to(6)
            await eventually(lambda: _eq(_columns(tab), stored + 1), "the 7th column by SSE")
            assert await tab.evaluate("window.__same_document === true")

            # the scripted cross at 9 s fires the rule; its alert becomes a marker
            await step_to(11)
            await eventually(lambda: _alerts_stored(r), "the flip-cross alert in the outbox")
            (alert,) = [
                json.loads(f[b"event"]) for _i, f in entries(await r.xrange(keys.outbox("SPY")))
            ]
            markers = f"{HEAT}.series.find(s => s.id === 'alerts').data"
            await eventually(lambda: _eq(tab.evaluate(f"{markers}.length"), 1), "the alert marker")
            assert await tab.evaluate(f"{markers}[0].summary") == alert["summary"]
            assert await tab.evaluate("window.__same_document === true")
            await _hover_marker(tab)
            tooltip = tab.locator("#heatmap div").filter(has_text=alert["summary"][:30])
            await tooltip.first.wait_for(state="visible", timeout=WAIT_S * 1000)

            # the header line follows the newest snapshot
            top = store.decode_fields(entries(await r.xrevrange(keys.snap("SPY"), count=1))[0][1])
            regime = await tab.inner_text("#regime")
            assert regime == (top.live_net_gex_label or "").lower()
            assert await tab.inner_text("#distance") != "–"
            assert await tab.inner_text("#asof") == top.as_of.isoformat().replace("+00:00", "Z")
            await tab.screenshot(path=str(screenshot_path("symbol.png")), full_page=True)
            assert browser.errors == []
    finally:
        if daemon.returncode is None:
            daemon.terminate()
            await asyncio.wait_for(daemon.wait(), WAIT_S)
        await r.aclose()
        await sim.close()


async def _eq(value: Any, want: Any) -> bool:
    return bool(await value == want)


async def _alerts_stored(r: aioredis.Redis) -> bool:
    return bool(await r.xlen(keys.outbox("SPY")))


async def _hover_marker(tab: Any) -> None:
    x, y = await tab.evaluate(
        "(() => { const c = echarts.getInstanceByDom(document.getElementById('heatmap'));"
        " const d = c.getOption().series.find(s => s.id === 'alerts').data[0].value;"
        " return c.convertToPixel({seriesId: 'alerts'}, d); })()"
    )
    box = await tab.locator("#heatmap").bounding_box()
    await tab.mouse.move(box["x"] + x, box["y"] + y - 8)  # the pin's head sits above its point
