"""Hostile timestamps (issue 17 item 1, and the as_of half of item 3a): a future-dated `as_of`
wiped a symbol's history and blocked it for good; an ancient one is trimmed as it lands; one at
or before 1970 can never be a stream ID. The daemon process, a real Redis, a real upstream."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import msgspec
import pytest
import redis.asyncio as aioredis
from aiohttp import web

from gex_alertd import config as config_mod
from gex_alertd import keys
from gex_alertd.asof_window import EXPIRED, FUTURE, AsOfWindow
from gex_alertd.commit import Committer
from gex_alertd.config import ConfigError, RedisConfig
from gex_alertd.connections import entries
from gex_alertd.model import FlowGex, as_ms, decode_flow_gex
from gex_alertd.rules.duration import Duration
from gex_alertd.sources.errors import MalformedPayload, RefusedSnapshot
from gex_alertd.sources.flowgex import FlowGexClient
from tests.hostile.upstream import ANCIENT, EPOCH, before_epoch, recent, snapshot
from tests.hostile.upstream import FUTURE as FUTURE_AS_OF
from tests.reliability.support import API_KEY, start_daemon
from tests.support.redis_server import RedisServer, free_port
from tests.support.upstream import Reply, Upstream, flow_gex_body
from tests.support.wait import eventually

NOW_MS = as_ms(datetime(2026, 11, 2, 15, 0, tzinfo=UTC))


def chain(as_of: datetime) -> FlowGex:
    return decode_flow_gex(msgspec.json.encode(flow_gex_body("SPY", as_of=as_of, strikes=4)))


def test_window_edges() -> None:
    w = AsOfWindow(max_future_s=300, max_age_s=7 * 86400)
    assert w.check(NOW_MS + 300_000, NOW_MS) is None
    assert w.check(NOW_MS - 7 * 86_400_000, NOW_MS) is None
    assert w.check(NOW_MS + 300_001, NOW_MS)[0] == FUTURE  # type: ignore[index]
    assert w.check(NOW_MS - 7 * 86_400_000 - 1, NOW_MS)[0] == EXPIRED  # type: ignore[index]
    assert AsOfWindow(300, None).check(0 + 1, NOW_MS) is None  # retention off: no lower bound


def test_max_future_s_is_validated_with_its_path() -> None:
    with pytest.raises(ConfigError, match=r"source\.max_future_s: must be 0 to 86400"):
        config_mod.parse({"source": {"max_future_s": -1}})
    assert config_mod.parse({"source": {"max_future_s": 30}}).source.max_future_s == 30


@pytest.fixture
async def up() -> AsyncIterator[Upstream]:
    async with Upstream() as server:
        yield server


@pytest.mark.parametrize("as_of", [EPOCH, before_epoch()])
async def test_as_of_at_or_before_1970_is_refused_at_validation(up: Upstream, as_of: str) -> None:
    up.push(snapshot("SPY", as_of=as_of), symbol="SPY")
    async with FlowGexClient(up.url, API_KEY) as client:
        with pytest.raises(MalformedPayload, match="is not after 1970-01-01"):
            await client.fetch("SPY")


async def test_client_refuses_future_and_expired_as_of_and_does_not_remember_them(
    up: Upstream,
) -> None:
    now = datetime(2026, 11, 2, 15, 0, tzinfo=UTC)
    window = AsOfWindow(max_future_s=300, max_age_s=3600)
    async with FlowGexClient(
        up.url, API_KEY, as_of_window=window, wall_clock=lambda: now.timestamp()
    ) as client:
        ahead = (now + timedelta(seconds=301)).isoformat()
        up.push(snapshot("SPY", as_of=ahead), symbol="SPY")
        with pytest.raises(RefusedSnapshot, match="ahead of this machine's clock") as info:
            await client.fetch("SPY")
        assert info.value.reason == FUTURE and "SPY" in str(info.value)
        up.push(snapshot("SPY", as_of=(now - timedelta(seconds=3601)).isoformat()), symbol="SPY")
        with pytest.raises(RefusedSnapshot, match="beyond the retention") as info:
            await client.fetch("SPY")
        assert info.value.reason == EXPIRED
        # the refused future as_of was not recorded as seen: a real one is new data
        up.push(snapshot("SPY", as_of=now.isoformat()), symbol="SPY")
        assert not (await client.fetch("SPY")).repeated


async def test_trim_cut_comes_from_the_redis_clock_not_the_payload(redis: aioredis.Redis) -> None:
    # MINID ~ trims whole nodes: small nodes make a short stream show it
    await redis.config_set("stream-node-max-entries", 10)
    try:
        committer = Committer(redis, [], RedisConfig(retention=Duration(60.0)))
        now = datetime.now(UTC)
        for i in range(40):
            await committer.commit(chain(as_of=now - timedelta(seconds=45 - i)), None)
        assert await redis.xlen(keys.snap("SPY")) == 40
        # an as_of 10 minutes ahead (a direct commit: the poller would refuse it): cut by the
        # payload, MINID would be now + 9 min and every stored node would go
        await committer.commit(chain(as_of=now + timedelta(minutes=10)), None)
        assert await redis.xlen(keys.snap("SPY")) == 41
    finally:
        await redis.config_set("stream-node-max-entries", 100)


def fresh(request: web.Request) -> Reply:
    """New data at the wall clock's time, for the symbol in the path."""
    return snapshot(request.path.rsplit("/", 1)[-1], as_of=recent())


async def _get(session: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    """(status, body); the ops server starts after the first polls, so wait for it to listen."""
    got: list[tuple[int, str]] = []

    async def answered() -> bool:
        try:
            async with session.get(url) as resp:
                got.append((resp.status, await resp.text()))
                return True
        except aiohttp.ClientConnectionError:
            return False

    await eventually(answered, f"an answer from {url}")
    return got[-1]


async def test_daemon_refuses_future_and_ancient_as_of_and_keeps_storing(
    up: Upstream, private_redis: RedisServer, tmp_path: Path
) -> None:
    up.set_default(fresh)
    port = free_port()
    config = tmp_path / "config.yaml"
    config.write_text(f"""
source: {{kind: flowgex, base_url: "{up.url}", api_key: {API_KEY}, requests_per_min: 100000,
          backoff_base_s: 0.05, backoff_max_s: 0.2}}
redis: {{url: "{private_redis.url}", retention: 7d}}
watch: {{interval_s: 0.1, jitter_s: 0, market_hours: always, symbols: [SPY, QQQ]}}
ops: {{listen: "127.0.0.1:{port}", log_format: json}}
""")
    redis = aioredis.Redis.from_url(private_redis.url)
    daemon = await start_daemon(tmp_path, config)
    try:

        async def stored(symbol: str, n: int) -> bool:
            assert daemon.alive, daemon.output()[-3000:]
            return int(await redis.xlen(keys.snap(symbol))) >= n

        await eventually(lambda: stored("SPY", 5), "5 SPY snapshots stored")
        before = {s: int(await redis.xlen(keys.snap(s))) for s in ("SPY", "QQQ")}
        up.push(snapshot("SPY", as_of=FUTURE_AS_OF), symbol="SPY")
        up.push(snapshot("QQQ", as_of=ANCIENT), symbol="QQQ")
        await eventually(lambda: up.pending() == 0, "the hostile replies served")
        # real data keeps being stored after them, on top of what was there
        await eventually(lambda: stored("SPY", before["SPY"] + 3), "SPY stored again")
        await eventually(lambda: stored("QQQ", before["QQQ"] + 3), "QQQ stored again")
        newest = entries(await redis.xrevrange(keys.snap("SPY"), count=1))
        assert int(newest[0][0].split(b"-")[0]) < (time.time() + 300) * 1000
        oldest = entries(await redis.xrange(keys.snap("QQQ"), count=1))
        assert int(oldest[0][0].split(b"-")[0]) > (time.time() - 7 * 86400) * 1000

        lines = [e for e in daemon.events() if e.get("event") == "snapshot refused"]
        assert {(e["symbol"], e["reason"]) for e in lines} == {("SPY", FUTURE), ("QQQ", EXPIRED)}
        async with aiohttp.ClientSession() as session:
            status, body = await _get(session, f"http://127.0.0.1:{port}/healthz")
            assert '"refused": 1' in body, body
            _, metrics = await _get(session, f"http://127.0.0.1:{port}/metrics")
        assert 'gexalertd_snapshots_refused_total{reason="future"} 1.0' in metrics
        assert 'gexalertd_snapshots_refused_total{reason="expired"} 1.0' in metrics
        assert status == 200  # one bad body is seen, not an outage
    finally:
        await redis.aclose()
        await daemon.stop()
