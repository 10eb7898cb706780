"""Data health end to end: the real daemon (a subprocess), a real aiohttp upstream that fails
and recovers, a real Redis, and a real webhook receiver.

- source_failing: SPY's polls fail (HTTP 503) until the rule fires, then succeed again: one
  firing and one resolved event reach the receiver, each exactly once;
- stale_data: QQQ is served with a `flow_feed` an hour old until the rule fires, then fresh:
  one firing, one resolved;
- heartbeat: added by a SIGHUP reload (the duty is armed then), the receiver hears the
  daemon's "alive" messages, naming the instance.

The upstream changes what it serves only once the receiver has seen the previous step, so
nothing here depends on how fast the machine is; timestamps are served near the real clock,
which the daemon judges against minutes-long limits.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import web

from tests.notify.support import Receiver
from tests.support.outbox import all_entries
from tests.support.redis_server import RedisServer, free_port
from tests.support.upstream import FLOW_GEX_PATH, Reply, Upstream, flow_gex_body
from tests.support.wait import WAIT_S, eventually

CONFIG = """
source: {{kind: flowgex, base_url: "{upstream}", api_key: e2e-key, timeout_s: 30,
          requests_per_min: 100000, backoff_base_s: 0.05, backoff_max_s: 0.2}}
redis: {{url: "{redis}", retention: 1d}}
watch: {{interval_s: 0.1, jitter_s: 0, market_hours: always, symbols: [SPY, QQQ]}}
channels: {{hook: {{type: webhook, url: "{hook}", retry_base_s: 0.05, retry_max_s: 0.5}}}}
rules:
  - {{name: spy-source, type: source_failing, symbols: [SPY], for: 1s, channels: [hook]}}
  - {{name: stale, type: stale_data, max_age: 5m, feeds: {{oi_feed: 1d}}, channels: [hook]}}
ops: {{listen: "127.0.0.1:{ops_port}", log_format: json}}
"""


class Served:
    """What the upstream serves right now: the test flips these between steps."""

    def __init__(self) -> None:
        self.spy_failing = True
        self.qqq_stale = True
        self.last = datetime.now(UTC)

    def reply(self, request: web.Request) -> Reply:
        symbol = request.path[len(FLOW_GEX_PATH) :]
        if symbol == "SPY" and self.spy_failing:
            return Reply.json({"message": "upstream down"}, status=503)
        # strictly increasing and near the real clock: every poll is a new snapshot
        now = max(datetime.now(UTC), self.last + timedelta(milliseconds=1))
        self.last = now
        flow = now - timedelta(hours=1) if symbol == "QQQ" and self.qqq_stale else now
        feeds = {"node": now, "flow_feed": flow, "oi_feed": now - timedelta(hours=3)}
        body = flow_gex_body(symbol, as_of=now)
        body["data_as_of"] = {k: v.isoformat().replace("+00:00", "Z") for k, v in feeds.items()}
        return Reply.json(body)


async def _run(tmp_path: Path, text: str) -> tuple[Path, Path, asyncio.subprocess.Process]:
    """`gex-alertd run` of the config `text` (written to config.yaml, which a reload then
    rewrites): the config's path, the log its output goes to, the process."""
    cfg = tmp_path / "config.yaml"
    cfg.write_text(text)
    log = tmp_path / "daemon.log"
    with log.open("ab") as out:
        daemon = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gex_alertd", "run", "--config", str(cfg), "--no-uvloop",
            stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path,
        )  # fmt: skip
    return cfg, log, daemon


def events(hook: Receiver) -> list[dict[str, Any]]:
    return [json.loads(h.body) for h in hook.hits if h.status == 200]


def of(hook: Receiver, rule: str) -> list[tuple[str, str]]:
    return [(e["status"], e["symbol"]) for e in events(hook) if e["rule"] == rule]


@pytest.mark.timeout(WAIT_S * 4)
async def test_source_failing_stale_data_and_heartbeat(
    tmp_path: Path, private_redis: RedisServer
) -> None:
    served = Served()
    hook = await Receiver().start()
    up = await Upstream(default=served.reply).start()
    ops_port = free_port()
    text = CONFIG.format(upstream=up.url, redis=private_redis.url, hook=hook.url, ops_port=ops_port)
    r = aioredis.Redis.from_url(private_redis.url)
    cfg, log, daemon = await _run(tmp_path, text)

    def tail() -> str:
        return log.read_text()[-3000:]

    async def seen(rule: str, want: list[tuple[str, str]]) -> None:
        async def ok() -> bool:
            assert daemon.returncode is None, tail()
            return of(hook, rule) == want

        await eventually(ok, f"{rule}: {want} at the receiver (got {of(hook, rule)})")

    try:
        await seen("spy-source", [("firing", "SPY")])
        async with aiohttp.ClientSession() as http:  # /healthz lists the open episode
            async with http.get(f"http://127.0.0.1:{ops_port}/healthz") as resp:
                health = await resp.json()
        spy_open = [e for e in health["operator"] if e["rule"] == "spy-source"]
        assert spy_open and spy_open[0]["symbol"] == "SPY" and spy_open[0]["notified"], health
        await seen("stale", [("firing", "QQQ")])
        served.spy_failing = False
        served.qqq_stale = False
        await seen("spy-source", [("firing", "SPY"), ("resolved", "SPY")])
        await seen("stale", [("firing", "QQQ"), ("resolved", "QQQ")])
        # many more good polls of both: a duplicate of either would be committed by now
        polls = len(up.requests)
        await up.wait_for_requests(polls + 40)
        assert of(hook, "heartbeat") == []  # not configured yet
        cfg.write_text(text + "heartbeat: {channel: hook, every: 1s}\n")
        daemon.send_signal(signal.SIGHUP)
        await eventually(lambda: len(of(hook, "heartbeat")) >= 2, "two heartbeats")
        daemon.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(daemon.wait(), WAIT_S) == 0, tail()
        # retention 1d: the outbox trim keeps every entry of this run
        outbox = [json.loads(f[b"event"]) for f in await all_entries(r)]
    finally:
        if daemon.returncode is None:
            daemon.kill()
            await daemon.wait()
        await r.aclose()
        await up.stop()
        await hook.stop()
    for rule, symbol in (("spy-source", "SPY"), ("stale", "QQQ")):
        committed = [(e["status"], e["symbol"]) for e in outbox if e["rule"] == rule]
        assert committed == [("firing", symbol), ("resolved", symbol)], committed
        assert of(hook, rule) == committed  # delivered exactly once each
        firing, resolved = (e for e in events(hook) if e["rule"] == rule)
        assert firing["id"] != resolved["id"]
        assert (firing["symbol"], firing["expiry"]) == (resolved["symbol"], resolved["expiry"])
    spy = next(e for e in events(hook) if e["rule"] == "spy-source")
    assert spy["details"]["status"] == 503 and spy["type"] == "source_failing"
    qqq = next(e for e in events(hook) if e["rule"] == "stale")
    assert qqq["details"]["stale_feeds"] == "flow_feed"  # oi_feed's own limit is a day
    beats = [e for e in events(hook) if e["rule"] == "heartbeat"]
    assert len({b["id"] for b in beats}) == len(beats)
    assert all(b["details"]["instance"] in b["summary"] for b in beats)
    assert any(b["details"]["symbols_polled"] >= 1 for b in beats)


@pytest.mark.timeout(WAIT_S * 4)
async def test_a_reload_that_rebuilds_the_operator_rules_keeps_the_heartbeat_count(
    tmp_path: Path, private_redis: RedisServer
) -> None:
    """The heartbeat's `alerts` is what this daemon enqueued since its previous message. A
    reload that changes the rules builds the operator rules anew, and with them their count of
    events enqueued since the start: a count of 0 after one of 1 made the next message say -1
    alerts, an alert enqueued in that interval 0."""
    served = Served()  # SPY fails throughout: its source_failing episode stays open
    hook = await Receiver().start()
    up = await Upstream(default=served.reply).start()
    ops_port = free_port()
    text = CONFIG.format(upstream=up.url, redis=private_redis.url, hook=hook.url, ops_port=ops_port)
    text += "heartbeat: {channel: hook, every: 1s}\n"
    cfg, log, daemon = await _run(tmp_path, text)

    def beats() -> list[int]:
        return [e["details"]["alerts"] for e in events(hook) if e["rule"] == "heartbeat"]

    async def until(what: str, ok: Any) -> None:
        async def check() -> bool:
            assert daemon.returncode is None, log.read_text()[-3000:]
            return bool(ok())

        await eventually(check, what)

    try:
        await until("spy-source firing", lambda: of(hook, "spy-source") == [("firing", "SPY")])
        await until("a heartbeat counting it", lambda: sum(beats()) >= 1)
        # another rule: a new engine and new operator rules (their state re-read from Redis)
        cfg.write_text(text.replace("max_age: 5m", "max_age: 6m"))
        daemon.send_signal(signal.SIGHUP)
        await until("the reload applied", lambda: "config reloaded" in log.read_text())
        n = len(beats())
        await until("two heartbeats after the reload", lambda: len(beats()) >= n + 2)
        daemon.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(daemon.wait(), WAIT_S) == 0, log.read_text()[-3000:]
    finally:
        if daemon.returncode is None:
            daemon.kill()
            await daemon.wait()
        await up.stop()
        await hook.stop()
    assert all(a >= 0 for a in beats()), beats()
    assert of(hook, "spy-source") == [("firing", "SPY")]  # the open episode is not fired again
