"""Spot paths read from real streams: exact values, paging, field order, unreadable entries."""

from __future__ import annotations

import numpy as np
import pytest
import redis.asyncio as aioredis

from gex_alertd import keys
from gex_alertd.outcomes import paths
from gex_alertd.outcomes.paths import last_ms, read_path
from tests.outcomes.streams import store_path
from tests.outcomes.test_measure import MIN, MONDAY, et

T0 = et(*MONDAY, 10, 0)


async def test_path_is_the_stored_scalars_across_pages(
    redis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(paths, "PAGE", 3)
    times = [T0 + i * MIN for i in range(10)]
    spots = [600.0 + i * 0.25 for i in range(10)]
    nets = [(-1) ** i * 1e9 + i for i in range(10)]
    await store_path(redis, "SPY", times, spots, nets)
    p = await read_path(redis, "SPY")
    assert p.t.tolist() == times and p.spot.tolist() == spots and p.net.tolist() == nets
    part = await read_path(redis, "SPY", None, times[2], times[6])
    assert part.t.tolist() == times[2:7]
    assert await last_ms(redis, "SPY") == times[-1]
    assert await last_ms(redis, "QQQ") is None
    assert len(await read_path(redis, "QQQ")) == 0


async def test_last_ms_is_the_last_id_the_stream_ever_had(redis: aioredis.Redis) -> None:
    times = [T0 + i * MIN for i in range(3)]
    await store_path(redis, "DIA", times, [400.0] * 3, strikes=100)
    assert await last_ms(redis, "DIA") == times[-1]
    await redis.xtrim(keys.snap("DIA"), maxlen=0)  # trimmed empty: it still got that far
    assert await last_ms(redis, "DIA") == times[-1]
    await redis.set(keys.snap("XLE"), "not a stream")
    assert await last_ms(redis, "XLE") is None


async def test_other_field_order_and_unreadable_spot(redis: aioredis.Redis) -> None:
    key = keys.snap("IWM")
    await redis.xadd(key, {"as_of": "x", "net": "5", "spot": "200.5"}, id=f"{T0}-0")
    await redis.xadd(key, {"as_of": "x", "spot": "", "net": "1"}, id=f"{T0 + MIN}-0")
    await redis.xadd(key, {"as_of": "x", "spot": "nan", "net": "1"}, id=f"{T0 + 2 * MIN}-0")
    await redis.xadd(key, {"as_of": "x", "spot": "201", "net": "-2"}, id=f"{T0 + 3 * MIN}-0")
    p = await read_path(redis, "IWM")
    assert p.t.tolist() == [T0, T0 + 3 * MIN]
    assert p.spot.tolist() == [200.5, 201.0] and p.net.tolist() == [5.0, -2.0]
    assert p.t.dtype == np.int64
