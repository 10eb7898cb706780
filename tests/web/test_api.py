"""The live page's JSON endpoints on a real server over a real Redis: the heatmap frame
(columns decoded from the stored blocks, window, quantization, levels, settled profile),
alerts by symbol, the index rows with health, gzip, and bad queries refused by name."""

from __future__ import annotations

import asyncio
import gzip
import threading
from typing import Any

import aiohttp
import msgspec
import pytest
import redis.asyncio as aioredis
from aiohttp import web

from gex_alertd import keys
from gex_alertd.config import RedisConfig
from gex_alertd.connections import connect_config, entries
from gex_alertd.model import AlertEvent, decode_flow_gex, outbox_fields
from gex_alertd.ops.http import OpsServer
from gex_alertd.rules.levels import levels
from gex_alertd.rules.repositioning import exchange_day
from gex_alertd.web import history, routes
from tests.support.redis_cluster import RedisCluster
from tests.support.wait import eventually
from tests.web.conftest import DAY_START, TARGETS, Page, body, put, store_settled


async def _get(page: Page, path: str, **headers: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession(auto_decompress=True) as http:
        async with http.get(page.url + path, headers=headers) as resp:
            if resp.status != 200:
                return resp.status, await resp.text()
            return resp.status, await resp.json()


async def test_the_frame_has_one_column_per_snapshot_decoded_from_the_blocks(
    redis: aioredis.Redis, page: Page
) -> None:
    for i in range(12):
        await put(redis, i)
    status, frame = await _get(page, "/api/SPY/snapshots?window_pct=100")
    assert status == 200
    assert len(frame["t"]) == 12 and frame["skipped"] == 0 and not frame["truncated"]
    k = len(frame["strikes"])
    assert len(frame["net_q"]) == 12 * k
    # spot drifts over a strike, so the grid is the union of the snapshots' grids
    grids = [decode_flow_gex(msgspec.json.encode(body(i))).strikes for i in range(12)]
    assert frame["strikes"] == sorted({r.strike for g in grids for r in g})
    # each cell is the stored net GEX to within half a quantum; absent strikes are missing
    for i in (0, 11):
        snap = decode_flow_gex(msgspec.json.encode(body(i)))
        row = frame["net_q"][i * k : (i + 1) * k]
        by_strike = dict(zip(frame["strikes"], row, strict=True))
        for r in snap.strikes:
            assert abs(by_strike.pop(r.strike) * frame["scale"] - r.net_gex) <= frame["scale"]
        assert set(by_strike.values()) == {frame["missing"]}
        lv = levels(snap)  # no stored wall fields here: computed by rules.levels
        assert (frame["call_wall"][i], frame["put_wall"][i]) == (lv.call_wall, lv.put_wall)
        assert frame["spot"][i] == snap.underlying_price
    latest = frame["latest"]
    snap = decode_flow_gex(msgspec.json.encode(body(11)))
    assert latest["net_gex"] == [r.net_gex for r in snap.strikes]  # exact floats
    assert latest["call_gex"] == [r.call_gex for r in snap.strikes]
    assert latest["regime"] == snap.live_net_gex_label
    assert frame["settled"] is None


async def test_the_window_and_the_range_bound_the_frame(redis: aioredis.Redis, page: Page) -> None:
    for i in range(6):
        await put(redis, i)
    _, frame = await _get(page, "/api/SPY/snapshots?window_pct=1")
    lo, hi = min(frame["spot"]) * 0.99, max(frame["spot"]) * 1.01
    assert frame["strikes"] and all(lo <= s <= hi for s in frame["strikes"])
    assert len(frame["strikes"]) < 40
    t2 = int(DAY_START.timestamp() * 1000) + 2 * 15_000
    _, frame = await _get(page, f"/api/SPY/snapshots?from={t2}&to={t2 + 15_000}")
    assert frame["t"] == [t2, t2 + 15_000]
    _, frame = await _get(page, "/api/SPY/snapshots?from=2026-05-11T14:01:00Z")
    assert len(frame["t"]) == 2


async def test_levels_are_the_stored_fields_else_computed_by_rules_levels(
    redis: aioredis.Redis, page: Page
) -> None:
    await put(redis, 0)
    await put(redis, 1)
    (first, fields0), (second, fields1) = entries(await redis.xrange(keys.snap("SPY")))
    await redis.delete(keys.snap("SPY"))
    # an entry written before the wall fields existed, then one whose fields say otherwise
    old: dict[Any, Any] = {k: v for k, v in fields0.items() if k not in (b"call_wall", b"put_wall")}
    await redis.xadd(keys.snap("SPY"), old, id=first)
    walls: dict[Any, Any] = {**fields1, b"call_wall": b"777", b"put_wall": b""}
    await redis.xadd(keys.snap("SPY"), walls, id=second)
    _, frame = await _get(page, "/api/SPY/snapshots")
    lv = levels(decode_flow_gex(msgspec.json.encode(body(0))))
    assert lv.call_wall is not None and lv.put_wall is not None
    assert frame["call_wall"] == [lv.call_wall, 777.0]
    assert frame["put_wall"] == [lv.put_wall, None]


async def test_the_settled_profile_comes_along_when_stored(
    redis: aioredis.Redis, page: Page
) -> None:
    await put(redis, 3)
    _, frame = await _get(page, "/api/SPY/snapshots")
    assert frame["settled"] is None
    settled = decode_flow_gex(msgspec.json.encode(body(0, spot=499.0)))
    await store_settled(redis, settled)
    _, frame = await _get(page, "/api/SPY/snapshots")
    assert frame["settled"]["net_gex"] == [r.net_gex for r in settled.strikes]
    assert frame["settled"]["strikes"] == [r.strike for r in settled.strikes]


@pytest.mark.parametrize(
    ("path", "status", "fragment"),
    [
        ("/api/SPY/snapshots?window_pct=0", 400, "window_pct: expected 0.1 to 100"),
        ("/api/SPY/snapshots?window_pct=abc", 400, "window_pct: expected a number"),
        ("/api/SPY/snapshots?from=yesterday", 400, "from: expected ms since the epoch"),
        ("/api/SPY/snapshots?to=" + "9" * 50, 400, "to: too long"),
        # beyond a stream ID's 64-bit time, or before 1970: Redis would refuse the XRANGE
        ("/api/SPY/snapshots?to=" + "9" * 30, 400, "to: expected a time from 1970 to 9999"),
        ("/api/SPY/snapshots?from=0001-01-01", 400, "from: expected a time from 1970"),
        ("/api/SPY/alerts?from=" + "9" * 25, 400, "from: expected a time from 1970"),
        ("/api/SPY/snapshots?expiry=soon", 400, "expiry: expected YYYY-MM-DD"),
        # digits to str.isdigit(), not to int(): a 500 with a traceback in the log
        ("/api/SPY/snapshots?from=%C2%B2", 400, "from: expected ms since the epoch"),
        ("/api/SPY/alerts?to=%E2%91%A0", 400, "to: expected ms since the epoch"),
        ("/api/NOPE/snapshots", 404, "NOPE is not watched"),
        ("/api/SPX/alerts", 404, "SPX is not watched"),  # only its expiry entry is
        ("/static/../routes.py", 404, ""),
    ],
)
async def test_bad_queries_are_refused_by_name(
    page: Page, path: str, status: int, fragment: str
) -> None:
    got, text = await _get(page, path)
    assert got == status
    assert fragment in text


async def test_responses_are_gzipped(redis: aioredis.Redis, page: Page) -> None:
    for i in range(4):
        await put(redis, i)
    async with aiohttp.ClientSession(auto_decompress=False) as http:
        async with http.get(
            page.url + "/api/SPY/snapshots", headers={"Accept-Encoding": "gzip"}
        ) as resp:
            assert resp.headers["Content-Encoding"] == "gzip"
            frame = msgspec.json.decode(gzip.decompress(await resp.read()))
            assert len(frame["t"]) == 4
        async with http.get(page.url + "/static/vendor/echarts/echarts.min.js") as resp:
            assert resp.headers["Content-Encoding"] == "gzip"
            assert b"Apache Software Foundation" in gzip.decompress(await resp.read())[:2000]


def _alert(i: int, symbol: str, **kw: Any) -> AlertEvent:
    fields: dict[str, Any] = {
        "id": f"r:{symbol}:{i}", "rule": "r", "type": "flip_cross", "symbol": symbol,
        "expiry": None, "severity": "warning", "as_of": f"2026-05-11T14:00:{i:02d}.000Z",
        "fired_at": "2026-05-11T14:00:59.000Z", "summary": f"{symbol} alert {i}",
    }  # fmt: skip
    fields.update(kw)
    return AlertEvent(**fields)


async def test_alerts_of_one_symbol_and_entry(redis: aioredis.Redis, page: Page) -> None:
    for i, sym in enumerate(["SPY", "QQQ", "SPY", "SPX"]):
        await redis.xadd(keys.outbox(sym), outbox_fields(_alert(i, sym), ["tty"]))
    spx = _alert(9, "SPX", expiry="2026-05-15")
    await redis.xadd(keys.outbox("SPX"), outbox_fields(spx, ["tty"]))
    await redis.xadd(keys.outbox("SPY"), {"symbol": "SPY", "event": "{not json"})
    _, got = await _get(page, "/api/SPY/alerts")
    assert [a["summary"] for a in got["alerts"]] == ["SPY alert 0", "SPY alert 2"]
    assert got["alerts"][0]["t"] == int(DAY_START.timestamp() * 1000)
    _, got = await _get(page, "/api/SPX/alerts?expiry=2026-05-15")
    assert [a["summary"] for a in got["alerts"]] == ["SPX alert 9"]


async def test_index_rows_with_health(redis: aioredis.Redis, page: Page) -> None:
    await put(redis, 0)
    await put(redis, 0, "QQQ")
    rows = await history.index_rows(
        redis, [("SPY", None, 15.0), ("QQQ", None, 15.0), ("IWM", None, 15.0)],
        now_ms=int(DAY_START.timestamp() * 1000) + 30_000,
    )  # fmt: skip
    assert [r["health"] for r in rows] == ["ok", "ok", "stale"]  # IWM: nothing stored
    failing = _alert(1, "QQQ", type="source_failing")
    await redis.xadd(keys.outbox("QQQ"), outbox_fields(failing, ["tty"]))
    # the whole source failing (the operator outbox) is no one symbol's health
    whole = _alert(3, keys.OPS_SYMBOL, type="source_failing")
    await redis.xadd(keys.outbox(keys.OPS_SYMBOL), outbox_fields(whole, ["tty"]))
    rows = await history.index_rows(
        redis, [("QQQ", None, 15.0), ("SPY", None, 15.0)], now_ms=int(DAY_START.timestamp() * 1000)
    )
    assert [r["health"] for r in rows] == ["failing", "ok"]
    resolved = _alert(2, "QQQ", type="source_failing", status="resolved")
    await redis.xadd(keys.outbox("QQQ"), outbox_fields(resolved, ["tty"]))
    rows = await history.index_rows(
        redis, [("QQQ", None, 15.0)], now_ms=int(DAY_START.timestamp() * 1000) + 10 * 60_000
    )
    assert rows[0]["health"] == "stale"  # recovered, but its last snapshot is 10 min old
    _, got = await _get(page, "/api/symbols")
    assert [r["symbol"] for r in got["symbols"]] == ["SPY", "QQQ", "SPX"]
    assert got["symbols"][0]["net"] is not None and "net_gex" not in got["symbols"][0]


async def test_the_page_only_reads(redis: aioredis.Redis, page: Page) -> None:
    for i in range(3):
        await put(redis, i)
    await redis.xadd(keys.outbox("SPY"), outbox_fields(_alert(1, "SPY"), ["tty"]))
    await redis.config_resetstat()
    async with aiohttp.ClientSession() as http:
        for path in ("/", "/view", "/api/symbols", "/api/SPY/snapshots", "/api/SPY/alerts"):
            async with http.get(page.url + path) as resp:
                assert resp.status == 200, path
    stats = await redis.info("commandstats")
    used = {name.removeprefix("cmdstat_").split("|")[0] for name in stats}
    writes = used & {"xadd", "hset", "set", "del", "xtrim", "xack", "xgroup", "expire", "unlink"}
    assert not writes, writes
    assert "xrevrange" in used


async def test_keys_of_another_type_are_named_not_a_traceback_and_the_index_goes_on(
    redis: aioredis.Redis, page: Page, caplog: pytest.LogCaptureFixture
) -> None:
    # QQQ's snapshot stream and outbox made another type by hand: every JSON endpoint that
    # read one answered aiohttp's bare 500 with a traceback in the log, the index page's
    # /api/symbols too, so one bad key blanked the rows of every symbol
    await put(redis, 1)
    await redis.set(keys.snap("QQQ"), "not a stream")
    await redis.set(keys.outbox("QQQ"), "not a stream")
    code, got = await _get(page, "/api/symbols")
    assert code == 200, got
    rows = {r["symbol"]: r for r in got["symbols"]}
    assert rows["SPY"]["t"] is not None and rows["QQQ"]["t"] is None
    assert rows["QQQ"]["health"] == "stale"  # nothing of it can be stored or read
    code, text = await _get(page, "/api/QQQ/snapshots?from=0")
    assert code == 500 and f"{keys.snap('QQQ')} holds another type" in text, text
    day = exchange_day(decode_flow_gex(msgspec.json.encode(body(1))))
    await redis.set(keys.settled("SPY", day), "not a cached profile")  # the frame goes on
    code, frame = await _get(page, "/api/SPY/snapshots?from=0")
    assert code == 200 and frame["settled"] is None, frame
    code, text = await _get(page, "/api/QQQ/alerts")
    assert code == 500 and f"{keys.outbox('QQQ')} holds another type" in text, text
    assert "Traceback" not in caplog.text and "Error handling request" not in caplog.text


async def _live_server(redis: aioredis.Redis, middleware: Any) -> tuple[OpsServer, routes.LivePage]:
    """The live page's routes on a started ops server (a port of its own), `middleware` first."""
    live = routes.LivePage(redis, lambda: TARGETS)

    def mount(app: web.Application) -> None:
        app.middlewares.append(middleware)
        live.mount(app)

    async def health() -> dict[str, Any]:
        return {"ok": True}

    server = OpsServer("127.0.0.1:0", health, mounts=(mount,))
    await server.start()
    return server, live


async def test_a_render_whose_client_left_still_holds_its_slot(
    redis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a frame's render runs in a thread, which a gone client cannot stop: the handler was
    # cancelled (handler_cancellation) and released its slot while the render went on, so new
    # frames started beside it: up to the thread pool's size at once, not FRAMES_AT_ONCE
    n = routes.FRAMES_AT_ONCE
    arrived, ended, reads, rendering, most = [0], [0], [0], [0], [0]
    lock, release = threading.Lock(), threading.Event()
    real_read, real_render = history.read_entries, history.heat_frame

    async def read(*args: Any) -> Any:
        reads[0] += 1  # before any await: a handler that got a slot is counted
        return await real_read(*args)

    def render(*args: Any) -> Any:  # in the worker thread
        with lock:
            rendering[0] += 1
            most[0] = max(most[0], rendering[0])
        try:
            release.wait(timeout=120)
            return real_render(*args)
        finally:
            with lock:
                rendering[0] -= 1

    monkeypatch.setattr(history, "read_entries", read)
    monkeypatch.setattr(history, "heat_frame", render)

    @web.middleware
    async def arrival(request: web.Request, handler: Any) -> web.StreamResponse:
        arrived[0] += 1  # the handler runs from here to its first await
        try:
            return await handler(request)
        finally:
            ended[0] += 1  # answered, or cancelled by its client's disconnect

    server, live = await _live_server(redis, arrival)
    try:
        await put(redis, 1)
        page = Page(f"http://127.0.0.1:{server.port}", live)
        path = "/api/SPY/snapshots?from=0"
        gone = [asyncio.create_task(_get(page, path)) for _ in range(n)]
        await eventually(lambda: rendering[0] == n, "every slot's frame rendering")
        for ask in gone:  # their clients disconnect while the renders run
            ask.cancel()
        await asyncio.gather(*gone, return_exceptions=True)
        await eventually(lambda: ended[0] == n, "the gone clients' handlers cancelled")
        asks = [asyncio.create_task(_get(page, path)) for _ in range(2)]
        await eventually(lambda: arrived[0] == n + 2, "the new requests at their handler")
        assert reads[0] == n  # they wait for a slot: the renders still run
        release.set()
        assert [status for status, _ in await asyncio.gather(*asks)] == [200, 200]
        assert most[0] == n
    finally:
        release.set()
        await server.stop()


async def test_history_reads_each_symbols_outbox_on_a_cluster(redis_cluster: RedisCluster) -> None:
    client = connect_config(RedisConfig(cluster=redis_cluster.startup_nodes))
    symbols = ("HCA", "HCB")  # this test's own: the cluster is shared by the session
    try:
        for sym in symbols:
            await client.delete(keys.snap(sym), keys.outbox(sym), keys.outcomes(sym))
            await put(client, 0, sym)
        await client.xadd(keys.outbox("HCA"), outbox_fields(_alert(1, "HCA"), ["tty"]))
        failing = _alert(2, "HCB", type="source_failing")
        await client.xadd(keys.outbox("HCB"), outbox_fields(failing, ["tty"]))
        got = await history.read_alerts(client, "HCA", None, None, None)
        assert [a["summary"] for a in got] == ["HCA alert 1"]
        rows = await history.index_rows(
            client, [(s, None, 15.0) for s in symbols], now_ms=int(DAY_START.timestamp() * 1000)
        )
        assert [r["health"] for r in rows] == ["ok", "failing"]
    finally:
        for sym in symbols:  # the session's cluster is shared: leave nothing behind
            await client.delete(keys.snap(sym), keys.outbox(sym), keys.outcomes(sym))
        await client.aclose()


@pytest.mark.parametrize(
    ("reader", "path"),
    [
        ("read_entries", "/api/SPY/snapshots?from=0"),
        ("read_alerts", "/api/SPY/alerts"),  # up to ALERT_SCAN outbox entries each
        ("index_rows", "/api/symbols"),  # up to FAILING_SCAN outbox entries each
    ],
)
async def test_heavy_frames_are_read_a_few_at_a_time_however_many_are_asked(
    redis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch, reader: str, path: str
) -> None:
    # each frame reads up to MAX_SNAPSHOTS entries (~24 MB of a day's blocks) and decodes them:
    # any number of them at once, so a page reloaded in many tabs (or any client of the ops
    # port) held that much per request, all together
    n = routes.FRAMES_AT_ONCE + 3
    arrived, inside, most = [0], [0], [0]
    release = asyncio.Event()
    real = getattr(history, reader)

    async def counted(*args: Any) -> Any:
        inside[0] += 1  # before any await: a handler that reached the call is counted
        most[0] = max(most[0], inside[0])
        await release.wait()
        try:
            return await real(*args)
        finally:
            inside[0] -= 1

    monkeypatch.setattr(history, reader, counted)

    @web.middleware
    async def arrival(request: web.Request, handler: Any) -> web.StreamResponse:
        arrived[0] += 1  # the handler runs from here to its first await
        return await handler(request)

    server, live = await _live_server(redis, arrival)
    try:
        await put(redis, 1)
        page = Page(f"http://127.0.0.1:{server.port}", live)
        asks = [asyncio.create_task(_get(page, path)) for _ in range(n)]
        await eventually(lambda: arrived[0] == n, "every request at its handler")
        assert inside[0] == routes.FRAMES_AT_ONCE  # the others wait their turn
        release.set()
        assert [status for status, _ in await asyncio.gather(*asks)] == [200] * n
        assert most[0] == routes.FRAMES_AT_ONCE
    finally:
        release.set()
        await server.stop()
