"""Upstream storms against the real daemon process: 429 bursts, 5xx runs, timeouts, malformed,
truncated and mistyped JSON, a huge body. No crash, nothing stored from bad data, a log line
naming the symbol and the cause for each, and no request inside a Retry-After window.

The upstream is the scriptable aiohttp server of tests/support/upstream.py: it serves a valid
snapshot (as_of in 2026) by default and the scripted bad replies first. Every bad reply that
looks like a snapshot carries an as_of in 2031, so anything stored from one would show.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import redis.asyncio as aioredis

from tests.reliability.support import API_KEY, Receiver, start_daemon, stored_as_of
from tests.support.redis_server import RedisServer
from tests.support.upstream import Reply, Upstream, flow_gex_body
from tests.support.wait import eventually

BAD_AS_OF = "2031-01-02T15:00:00Z"
BAD_MS = int(datetime(2031, 1, 1, tzinfo=UTC).timestamp() * 1000)
RETRY_AFTER_S = 2
# long enough that no scripted reply but the delayed one times out on a busy machine (a reply
# lost to a timeout would be logged as one, not as what it was)
TIMEOUT_S = 5


def bad(sym: str, /, **overrides: object) -> bytes:
    body = flow_gex_body(sym, as_of=BAD_AS_OF)
    body.update(overrides)
    return msgspec.json.encode(body)


def script(up: Upstream) -> dict[str, list[str]]:
    """Queue the storm; return per symbol the words its log lines must contain."""
    spy_good = msgspec.json.encode(flow_gex_body("SPY", as_of=BAD_AS_OF))
    up.push(
        Reply(503, {"message": "upstream overloaded"}),
        Reply(502, b"<html>bad gateway</html>", content_type="text/html"),
        Reply(500, {"detail": "internal error"}),
        Reply(429, {"message": "slow down"}, headers={"Retry-After": str(RETRY_AFTER_S)}),
        Reply(200, b'{"symbol": "SPY", "as_of": "2031-01-02T15:0'),  # malformed
        Reply(200, spy_good, truncate_at=len(spy_good) // 2),  # connection lost mid-body
        Reply(200, bad("SPY", underlying_price="600.5")),  # a string for a number
        Reply(200, bad("SPY", strikes="none")),
        Reply(200, bad("SPY", underlying_price=-1.0)),  # impossible value
        # a JSON number overflowing a double
        Reply(200, bad("SPY", live_net_gex=123456789.5).replace(b"123456789.5", b"1e400")),
        # huge: 30 MB of strikes that never close
        Reply(200, b'{"symbol":"SPY","as_of":"' + BAD_AS_OF.encode() + b'","strikes":['
              + b'{"strike":1.0,"call_gex":1.0},' * 1_000_000),
        symbol="SPY",
    )  # fmt: skip
    up.push(
        Reply(200, bad("QQQ"), delay_s=600.0),  # far longer than timeout_s: a timeout
        Reply(504, {"message": "gateway timeout"}),
        Reply(200, b"null"),
        Reply(200, b"[]"),
        Reply(200, bad("QQQ", as_of="yesterday")),
        Reply(200, bad("QQQ", symbol="SPY")),  # someone else's snapshot
        Reply(200, bad("QQQ", strikes=[{"strike": "x"}])),
        Reply(200, b"\xff\xfe garbage \x00"),
        symbol="QQQ",
    )
    return {
        "SPY": ["503", "502", "500", "rate limited", "malformed", "underlying_price"],
        "QQQ": ["no complete response", "504", "malformed", "symbol"],
    }


async def test_upstream_storm_stores_nothing_bad_and_honours_retry_after(
    private_redis: RedisServer, tmp_path: Path
) -> None:
    up = await Upstream().start()
    rx = await Receiver().start()
    expect = script(up)
    config = tmp_path / "config.yaml"
    config.write_text(f"""
source: {{kind: flowgex, base_url: "{up.url}", api_key: {API_KEY}, timeout_s: {TIMEOUT_S},
          requests_per_min: 100000, backoff_base_s: 0.05, backoff_max_s: 0.3}}
redis: {{url: "{private_redis.url}"}}
watch: {{interval_s: 0.05, jitter_s: 0, market_hours: always, symbols: [SPY, QQQ, IWM]}}
channels: {{hook: {{type: webhook, url: "{rx.url}"}}}}
rules:
  - {{name: flips, type: flip_cross, symbols: "*", direction: any, band_pct: 0, cooldown: 0s,
     channels: [hook]}}
ops: {{listen: null, log_format: json, log_level: info}}
""")
    redis = aioredis.Redis.from_url(private_redis.url)
    daemon = await start_daemon(tmp_path, config)
    try:

        def storm_served() -> bool:
            assert daemon.alive, daemon.output()[-3000:]
            return not up.pending()

        await eventually(storm_served, "the upstream to serve every scripted reply")

        async def recovered() -> bool:
            assert daemon.alive, daemon.output()[-3000:]
            streams = await stored_as_of(redis)
            return len(streams) == 3 and all(streams.values())

        # after the storm, good data flows again for every symbol
        await eventually(recovered, "snapshots stored for SPY, QQQ and IWM after the storm")
        streams = await stored_as_of(redis)
        assert set(streams) == {"gex:{SPY}:snap", "gex:{QQQ}:snap", "gex:{IWM}:snap"}
        for key, ms in streams.items():
            assert ms, f"{key}: nothing stored after the storm"
            assert max(ms) < BAD_MS, f"{key}: stored a snapshot from a bad reply"

        # Retry-After: nothing on the key (any symbol) inside the window, beyond what was
        # already on the wire when the 429 was answered. A poller has one request out at a
        # time, so that is at most one per other symbol, and none for SPY, which got the 429;
        # when such a request reaches the upstream depends on the machine, so arrival times
        # alone cannot tell it apart.
        limited = [r for r in up.requests if r.status == 429]
        assert len(limited) == 1 and limited[0].responded_at is not None
        t429 = limited[0].responded_at
        await eventually(
            lambda: any(r.arrived_at >= t429 + RETRY_AFTER_S for r in up.requests),
            "a request after the Retry-After window",
        )
        inside = Counter(
            r.path.rsplit("/", 1)[-1]
            for r in up.requests
            if t429 <= r.arrived_at < t429 + RETRY_AFTER_S
        )
        assert inside["SPY"] == 0 and max(inside.values(), default=0) <= 1, (
            f"requests inside the Retry-After window: {dict(inside)}"
        )

        events = daemon.events()
        for symbol, words in expect.items():
            lines = [
                f"{e.get('event')} {e.get('error', '')}".lower()
                for e in events
                if e.get("symbol") == symbol and e.get("level") in ("warning", "error")
            ]
            for word in words:
                assert any(word.lower() in line for line in lines), (
                    f"no log line for {symbol} naming {word!r}:\n" + "\n".join(lines)
                )
        assert "Traceback" not in daemon.output()
    finally:
        await redis.aclose()
        await daemon.stop()
        await up.stop()
        await rx.stop()
