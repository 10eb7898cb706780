"""The settled profile at the edge: fetched from the simulator's /v1/exposure/gex over HTTP,
cached in a real Redis per symbol and day with a TTL, bounded, retried, never yesterday's."""

from __future__ import annotations

import asyncio
import tracemalloc
from collections.abc import AsyncIterator
from datetime import timedelta

import msgspec
import pytest
import redis.asyncio as aioredis
import structlog
from aiohttp import web

from gex_alertd import keys
from gex_alertd.config import SimulatorOptions
from gex_alertd.model import PayloadError, decode_flow_gex, iso_utc
from gex_alertd.rules.repositioning import exchange_day, settled_of
from gex_alertd.settled import SettledProfiles, decode_cached, decode_settled
from gex_alertd.sources.errors import MalformedPayload, TransientError
from gex_alertd.sources.flowgex import FlowGexClient
from gex_alertd.sources.simulator.clock import ManualClock
from gex_alertd.sources.simulator.embedded import EmbeddedSimulator, make_app, serve

KEY = "settled-test-key"
SCENARIO = "start: 2026-03-02T14:30:00Z\n"


@pytest.fixture
async def sim() -> AsyncIterator[tuple[EmbeddedSimulator, ManualClock]]:
    clock = ManualClock()
    app = make_app(SimulatorOptions(cache_s=0, rate_limit_per_min=0), KEY, SCENARIO, clock=clock)
    handle = await serve(app)
    yield handle, clock
    await handle.close()


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


async def test_fetched_once_per_day_cached_with_a_ttl_and_shared(
    sim: tuple[EmbeddedSimulator, ManualClock], redis: aioredis.Redis
) -> None:
    handle, clock = sim
    calls: list[str] = []
    async with FlowGexClient(handle.base_url, KEY) as client:

        async def fetch(symbol: str, expiry: str | None) -> bytes:
            calls.append(symbol)
            return await client.fetch_settled(symbol, expiry)

        profiles = SettledProfiles(redis, fetch, ttl_s=7 * 86400)
        first = (await client.fetch("SPY")).snapshot
        await profiles.attach(first, None)
        got = settled_of(first)
        assert got is not None and got.day == exchange_day(first) and len(got.strike) > 100
        key = keys.settled("SPY", exchange_day(first))
        assert key == "gex:{SPY}:settled:2026-03-02"
        assert 6 * 86400 < await redis.ttl(key) <= 7 * 86400
        clock.advance(5)
        second = (await client.fetch("SPY")).snapshot
        await profiles.attach(second, None)
        assert settled_of(second) == got and calls == ["SPY"]
        # another daemon (or a restart) reads the stored copy instead of fetching
        other = SettledProfiles(redis, fetch)
        third = (await client.fetch("SPY")).snapshot
        await other.attach(third, None)
        assert settled_of(third) == got and calls == ["SPY"]
        raw = await redis.get(key)
        assert raw is not None
        cached = decode_cached(raw)
        assert cached is not None and cached.from_ms == first.as_of_ms
        # replay (no fetch) attaches it from the snapshot it was first attached to on
        replay = SettledProfiles(redis, None)
        early = msgspec.structs.replace(first, as_of=first.as_of - timedelta(seconds=1))
        await replay.attach(early, None)
        await replay.attach(first, None)
        assert settled_of(early) is None and settled_of(first) == got


async def test_yesterdays_profile_is_not_used_and_is_retried_later(
    sim: tuple[EmbeddedSimulator, ManualClock], redis: aioredis.Redis
) -> None:
    handle, _ = sim
    calls: list[str] = []
    async with FlowGexClient(handle.base_url, KEY) as client:

        async def stale(symbol: str, expiry: str | None) -> bytes:
            calls.append(symbol)
            tree = msgspec.json.decode(await client.fetch_settled(symbol, expiry))
            tree["as_of"] = "2026-02-27T21:00:00Z"  # Friday's: today's settle not out yet
            return msgspec.json.encode(tree)

        tick = Clock()
        profiles = SettledProfiles(redis, stale, retry_s=60, clock=tick)
        snap = (await client.fetch("SPY")).snapshot
        await profiles.attach(snap, None)
        assert settled_of(snap) is None and calls == ["SPY"]
        assert not await redis.exists(keys.settled("SPY", exchange_day(snap)))
        await profiles.attach(snap, None)
        assert calls == ["SPY"]  # not hammered: the next try after retry_s
        tick.t = 61
        await profiles.attach(snap, None)
        assert calls == ["SPY", "SPY"] and settled_of(snap) is None


async def test_an_oversized_settled_body_is_refused_and_nothing_cached(
    sim: tuple[EmbeddedSimulator, ManualClock], redis: aioredis.Redis
) -> None:
    handle, _ = sim
    async with FlowGexClient(handle.base_url, KEY, max_body_bytes=2000) as small:
        with pytest.raises(MalformedPayload):
            await small.fetch_settled("SPY")
    async with (
        FlowGexClient(handle.base_url, KEY) as client,
        FlowGexClient(handle.base_url, KEY, max_body_bytes=2000) as small,
    ):
        profiles = SettledProfiles(redis, small.fetch_settled)
        snap = (await client.fetch("SPY")).snapshot
        await profiles.attach(snap, None)  # logged, not raised: the live commit goes on
        assert settled_of(snap) is None
        assert await redis.keys("gex:*settled*") == []


def test_both_wire_shapes_decode_and_problems_are_named() -> None:
    flow_shaped = msgspec.json.encode(
        {
            "symbol": "SPY",
            "as_of": "2026-03-02T14:30:00Z",
            "underlying_price": 600.0,
            "live_net_gex": 1.0,
            "strikes": [{"strike": 600.0, "call_gex": 5.0, "put_gex": -3.0}],
        }
    )
    sdk_shaped = flow_shaped.replace(b'"live_net_gex"', b'"net_gex"')
    for body in (flow_shaped, sdk_shaped):
        s = decode_settled(body, "SPY")
        assert iso_utc(s.as_of) == "2026-03-02T14:30:00.000Z" and s.strikes[0].call_gex == 5.0
    with pytest.raises(PayloadError, match=r"settled GEX payload: .*underlying_price"):
        decode_settled(b'{"symbol": "SPY", "as_of": "2026-03-02T14:30:00Z"}', "SPY")
    with pytest.raises(PayloadError, match="malformed settled GEX"):
        decode_settled(b"[1, 2]", "SPY")
    with pytest.raises(PayloadError, match="does not match"):
        decode_settled(flow_shaped, "QQQ")
    # nested deeper than the parser goes: a PayloadError, not msgspec's RecursionError
    with pytest.raises(PayloadError, match="malformed settled GEX payload: JSON nested too deeply"):
        decode_settled(b'{"x": ' + b"[" * 5_000 + b"]" * 5_000 + b"}", "SPY")
    assert decode_flow_gex(flow_shaped).symbol == "SPY"


def test_a_settled_body_of_many_tiny_rows_is_refused_without_building_them() -> None:
    # the body was decoded whole into Python objects first (to rename the SDK's fields): 1M
    # tiny rows, a 17 MB body inside the 16 MB-ish bound, peaked at 351 MB and held the loop
    # ~2.7 s before the strike bound (model.MAX_STRIKES) could refuse it
    rows = b",".join(b'{"strike":%d}' % (i + 1) for i in range(100_000))
    body = b'{"symbol":"SPY","as_of":"2026-03-02T14:30:00Z","underlying_price":600,'
    body += b'"net_gex":1,"strikes":[' + rows + b"]}"
    tracemalloc.start()
    try:
        with pytest.raises(PayloadError, match="settled GEX payload: more than 20000 strike rows"):
            decode_settled(body, "SPY")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * len(body), f"peak {peak} bytes for a {len(body)}-byte body"


GOOD = {
    "symbol": "SPY",
    "underlying_price": 600.0,
    "live_net_gex": 1.0,
    "strikes": [{"strike": 600.0, "call_gex": 5.0, "put_gex": -3.0}],
}


@pytest.mark.parametrize(
    ("body", "cause"),
    [
        (b'{"symbol": "SPY", "as_of": ', "malformed settled GEX payload"),
        (b"\xff\xfe garbage", "malformed settled GEX payload"),
        (msgspec.json.encode({**GOOD, "symbol": "QQQ"}), "does not match"),
        (msgspec.json.encode({**GOOD, "strikes": []}), "no strikes"),
        (msgspec.json.encode({**GOOD, "strikes": [{"strike": -1}]}), "invalid settled GEX"),
    ],
    ids=["truncated", "not utf-8", "another symbol", "no strikes", "bad strike"],
)
async def test_a_garbage_settled_body_is_one_clear_warning_and_nothing_stored(
    sim: tuple[EmbeddedSimulator, ManualClock], redis: aioredis.Redis, body: bytes, cause: str
) -> None:
    handle, _ = sim
    calls: list[str] = []

    async def garbage(symbol: str, expiry: str | None) -> bytes:
        calls.append(symbol)
        if b"as_of" in body or not body.startswith(b"{"):
            return body
        tree = msgspec.json.decode(body)
        return msgspec.json.encode({**tree, "as_of": iso_utc(snap.as_of)})  # today's

    async with FlowGexClient(handle.base_url, KEY) as client:
        snap = (await client.fetch("SPY")).snapshot
    tick = Clock()
    profiles = SettledProfiles(redis, garbage, retry_s=60, clock=tick)
    with structlog.testing.capture_logs() as logs:
        await profiles.attach(snap, None)  # never raises: the live commit goes on
        await profiles.attach(snap, None)  # within retry_s: not fetched, not logged again
    assert settled_of(snap) is None and calls == ["SPY"]
    assert await redis.keys("gex:*settled*") == []
    [line] = [e for e in logs if e["event"] == "settled profile unavailable"]
    assert cause in line["error"] and line["symbol"] == "SPY" and line["log_level"] == "warning"
    assert "Traceback" not in line["error"]
    tick.t = 61
    await profiles.attach(snap, None)
    assert calls == ["SPY", "SPY"]  # tried again after retry_s


async def test_a_settled_endpoint_that_never_answers_is_bounded_by_the_timeout(
    redis: aioredis.Redis,
) -> None:
    # a server that accepts and never answers: the fetch ends by source.timeout_s (a hang,
    # not a speed: the test asserts the bound is applied, with no figure on how fast)
    never = asyncio.Event()

    async def hang(request: web.Request) -> web.Response:
        await never.wait()
        return web.Response(status=500)

    app = web.Application()
    app.router.add_get("/v1/exposure/gex/{symbol}", hang)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]  # started above
    snap = decode_settled(msgspec.json.encode({**GOOD, "as_of": "2026-03-02T14:30:00Z"}), "SPY")
    try:
        async with FlowGexClient(f"http://127.0.0.1:{port}", KEY, timeout_s=1) as client:
            profiles = SettledProfiles(redis, client.fetch_settled)
            with structlog.testing.capture_logs() as logs:
                await asyncio.wait_for(profiles.attach(snap, None), timeout=120)
    finally:
        never.set()
        await runner.cleanup()
    assert settled_of(snap) is None
    [line] = [e for e in logs if e["event"] == "settled profile unavailable"]
    assert "no complete response within 1 s" in line["error"]
    assert await redis.keys("gex:*settled*") == []


async def test_a_new_day_is_fetched_at_once_and_failed_days_are_not_remembered(
    redis: aioredis.Redis,
) -> None:
    calls: list[str] = []

    async def down(symbol: str, expiry: str | None) -> bytes:
        calls.append(symbol)
        raise TransientError("upstream 503", symbol=symbol)

    tick = Clock()
    profiles = SettledProfiles(redis, down, retry_s=60, clock=tick)
    for day in ("2026-03-02", "2026-03-03", "2026-03-04"):
        snap = decode_settled(msgspec.json.encode({**GOOD, "as_of": f"{day}T14:30:00Z"}), "SPY")
        await profiles.attach(snap, None)  # a new day: tried at once, whatever the last retry
        await profiles.attach(snap, None)  # the same day within retry_s: not again
    assert calls == ["SPY"] * 3
    assert len(profiles._next_try) == 1  # one entry per target, not one per failed day


async def test_a_cache_key_of_another_type_is_one_error_line_and_the_profile_kept_in_memory(
    sim: tuple[EmbeddedSimulator, ManualClock], redis: aioredis.Redis
) -> None:
    # the day's cache key made another type by hand: its GET raised WRONGTYPE out of attach,
    # which the poller counts as a snapshot that can never commit ('data'): every snapshot of
    # the symbol set aside to gex:dead all day, no rule of it evaluated, a line per poll
    handle, _clock = sim
    async with FlowGexClient(handle.base_url, KEY) as client:
        first = (await client.fetch("SPY")).snapshot
        key = keys.settled("SPY", exchange_day(first))
        await redis.rpush(key, "not a cached profile")
        profiles = SettledProfiles(redis, client.fetch_settled)
        with structlog.testing.capture_logs() as logs:
            await profiles.attach(first, None)
            second = (await client.fetch("SPY")).snapshot
            await profiles.attach(second, None)
        got = settled_of(first)
        assert got is not None and settled_of(second) == got  # fetched, kept in memory
        named = [e for e in logs if e.get("key") == key]
        assert [e["log_level"] for e in named] == ["error"], logs
        assert await redis.lrange(key, 0, -1) == [b"not a cached profile"]  # left alone
        replay = SettledProfiles(redis, None)  # replay reads the cache only: none there
        third = (await client.fetch("SPY")).snapshot
        await replay.attach(third, None)
        assert settled_of(third) is None

    async def down(symbol: str, expiry: str | None) -> bytes:
        raise TransientError("upstream 503", symbol=symbol)

    failing = SettledProfiles(redis, down)  # nothing kept in memory: read again every poll
    with structlog.testing.capture_logs() as logs:
        for _ in range(3):
            await failing.attach(first, None)
    assert len([e for e in logs if e.get("key") == key]) == 1  # not one line per poll
