"""Snapshots written the way the daemon stores them, and the live page on a real loopback
server reading them from a real Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
import redis.asyncio as aioredis

from gex_alertd import keys, store
from gex_alertd.config import RedisConfig, WatchTarget
from gex_alertd.model import FlowGex, decode_flow_gex
from gex_alertd.ops.http import OpsServer
from gex_alertd.rules.repositioning import exchange_day, settled_from
from gex_alertd.settled import CachedSettled, encode_cached
from gex_alertd.web.routes import LivePage
from tests.support.upstream import flow_gex_body

# 10:00 New York on a weekday: the whole test day is one trading day
DAY_START = datetime(2026, 5, 11, 14, 0, tzinfo=UTC)
TARGETS = [
    WatchTarget("SPY", None, 15.0, 0.0),
    WatchTarget("QQQ", None, 15.0, 0.0),
    WatchTarget("SPX", "2026-05-15", 30.0, 0.0),
]


def body(i: int, symbol: str = "SPY", **kw: Any) -> dict[str, Any]:
    """Snapshot `i` of the test day: 15 s apart, spot drifting up a little."""
    kw.setdefault("spot", 500.0 + 0.1 * i)
    kw.setdefault("strikes", 40)
    kw.setdefault("step", 1.0)
    return flow_gex_body(symbol, as_of=DAY_START + timedelta(seconds=15 * i), **kw)


async def put(redis: aioredis.Redis, i: int, symbol: str = "SPY", **kw: Any) -> None:
    snap = decode_flow_gex(msgspec.json.encode(body(i, symbol, **kw)))
    # untrimmed: the test day is in the past, and the retention cut is Redis's clock
    assert await store.write_snapshot(redis, snap, kw.get("expiry"), RedisConfig(retention=None))


async def store_settled(redis: aioredis.Redis, settled: FlowGex) -> None:
    """The day's settled profile cached as the daemon caches it (`gex_alertd.settled`)."""
    profile = settled_from(settled)
    key = keys.settled(settled.symbol, exchange_day(settled))
    await redis.set(key, encode_cached(CachedSettled(profile.as_of_ms, profile)))


@dataclass
class Page:
    url: str
    page: LivePage


@pytest.fixture
async def page(redis: aioredis.Redis) -> AsyncIterator[Page]:
    live = LivePage(redis, lambda: TARGETS)

    async def health() -> dict[str, Any]:
        return {"ok": True}

    server = OpsServer("127.0.0.1:0", health, mounts=(live.mount,))
    await server.start()
    try:
        yield Page(f"http://127.0.0.1:{server.port}", live)
    finally:
        await server.stop()


Put = Callable[..., Any]
