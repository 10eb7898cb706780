"""The live feed: one XREAD reader whatever the number of pages, each event built once and
handed to every page that wants it; a page that falls behind is dropped, not waited for; and
the SSE endpoint delivers a stored snapshot and an alert to a real HTTP client."""

from __future__ import annotations

import asyncio
import socket
from functools import partial
from typing import Any

import aiohttp
import msgspec
import pytest
import redis.asyncio as aioredis
from structlog.testing import capture_logs

from gex_alertd import keys
from gex_alertd.config import RedisConfig
from gex_alertd.connections import connect_config
from gex_alertd.model import outbox_fields
from gex_alertd.web import routes
from gex_alertd.web.live import QUEUE_FRAMES, Hub, Subscriber
from tests.support.redis_cluster import RedisCluster
from tests.support.wait import eventually
from tests.web.conftest import Page, put
from tests.web.test_api import _alert


async def _frames(sub: Subscriber) -> list[bytes | None]:
    out = []
    while not sub.queue.empty():
        out.append(sub.queue.get_nowait())
    return out


async def test_one_reader_builds_each_event_once_for_every_page(redis: aioredis.Redis) -> None:
    hub = Hub(redis, lambda: [("SPY", None), ("QQQ", None)])
    await put(redis, 0)  # stored before anyone listens: not sent (history is the JSON API)
    spy = [hub.subscribe("SPY") for _ in range(5)]
    index = hub.subscribe(None)
    qqq = hub.subscribe("QQQ")
    try:
        await eventually(lambda: hub._task is not None, "the reader")
        await eventually(lambda: _started(hub, redis), "the reader's first XREAD")
        for i in (1, 2, 3):
            await put(redis, i)
        await redis.xadd(keys.outbox("SPY"), outbox_fields(_alert(1, "SPY"), ["tty"]))
        await eventually(lambda: hub.frames_built == 4, "3 snapshots and 1 alert built once")
        await eventually(lambda: index.queue.qsize() == 4, "the index's 4 frames")
        first = await _frames(spy[0])
        assert [f.split(b"\n", 1)[0] for f in first if f] == [b"event: snapshot"] * 3 + [
            b"event: alert"
        ]
        for other in spy[1:]:
            assert await _frames(other) == first  # the same bytes, built once
        brief = await _frames(index)
        assert [f.split(b"\n", 1)[0] for f in brief if f][:3] == [b"event: summary"] * 3
        assert brief[0] is not None and b'"net_gex"' not in brief[0]  # scalars only for the index
        assert await _frames(qqq) == []  # nothing of SPY
        readers = [c for c in await redis.client_list() if c.get("cmd") == "xread"]
        assert len(readers) == 1  # seven pages, one reader
    finally:
        await hub.stop()


async def test_a_stream_of_another_type_is_left_out_not_the_whole_feed(
    redis: aioredis.Redis,
) -> None:
    # one watched stream made another type by hand: the one XREAD over every stream failed
    # with WRONGTYPE, round after round (a warning each, backing off to 5 s), and no page got
    # anything of any symbol. Now that key is left out, named in one error line, read again
    # once it is a stream
    hub = Hub(redis, lambda: [("SPY", None), ("QQQ", None)])
    await redis.set(keys.snap("QQQ"), "not a stream")
    with capture_logs() as logs:
        index = hub.subscribe(None)
        try:
            await eventually(lambda: _started(hub, redis), "the reader's XREAD without it")
            await put(redis, 1)
            await eventually(lambda: index.queue.qsize() == 1, "SPY's summary on the index")
            assert hub.refused == {keys.snap("QQQ"): "string"}
            await redis.delete(keys.snap("QQQ"))
            hub.recheck_at = 0.0  # due now (every REFUSED_RECHECK_S)
            await eventually(lambda: not hub.refused, "QQQ read again")
            rounds = hub.rounds
            await eventually(lambda: hub.rounds > rounds, "a read with QQQ's cursor")
            await put(redis, 1, "QQQ")
            await eventually(lambda: index.queue.qsize() == 2, "QQQ's summary on the index")
        finally:
            await hub.stop()
    named = [e for e in logs if e.get("key") == keys.snap("QQQ")]
    assert [e["log_level"] for e in named] == ["error"]
    assert not [e for e in logs if e.get("event") == "live page reader: redis unavailable"]


def test_only_the_streams_of_open_pages_are_read(redis: aioredis.Redis) -> None:
    hub = Hub(redis, lambda: [("SPY", None), ("QQQ", None), ("SPX", "2026-05-15")])
    hub._subs.add(Subscriber("SPX:2026-05-15"))
    assert hub._streams() == {
        "SPX": {keys.outbox("SPX"): None, keys.snap("SPX", "2026-05-15"): "SPX:2026-05-15"}
    }
    hub._subs.add(Subscriber(None))  # an index page: every symbol, and the operator outbox
    got = hub._streams()
    assert set(got) == {"SPY", "QQQ", "SPX", keys.OPS_SYMBOL}
    assert got["SPY"] == {keys.outbox("SPY"): None, keys.snap("SPY"): "SPY"}
    assert got[keys.OPS_SYMBOL] == {keys.outbox(keys.OPS_SYMBOL): None}


async def test_the_live_feed_on_a_cluster(redis_cluster: RedisCluster) -> None:
    client = connect_config(RedisConfig(cluster=redis_cluster.startup_nodes))
    symbols = ("LVA", "LVB")  # this test's own: the cluster is shared by the session
    for sym in symbols:
        await client.delete(keys.snap(sym), keys.outbox(sym))
    hub = Hub(client, lambda: [(s, None) for s in symbols])
    page = hub.subscribe("LVA")
    try:
        await eventually(lambda: hub.rounds >= 1, "the reader's first round")
        index = hub.subscribe(None)
        rounds = hub.rounds
        await eventually(lambda: hub.rounds > rounds + 1, "a round with the index's streams")
        await put(client, 1, "LVA")
        await put(client, 1, "LVB")
        await client.xadd(keys.outbox("LVB"), outbox_fields(_alert(1, "LVB"), ["tty"]))
        await client.xadd(keys.outbox("LVA"), outbox_fields(_alert(2, "LVA"), ["tty"]))
        await eventually(lambda: index.queue.qsize() == 4, "the index's 4 frames")
        heads = sorted(f.split(b"\n", 1)[0] for f in await _frames(index) if f)
        assert heads == [b"event: alert"] * 2 + [b"event: summary"] * 2
        got = [f for f in await _frames(page) if f]
        assert sorted(f.split(b"\n", 1)[0] for f in got) == [b"event: alert", b"event: snapshot"]
        assert any(b"LVA alert 2" in f for f in got)
    finally:
        await hub.stop()
        for sym in symbols:  # the session's cluster is shared: leave nothing behind
            await client.delete(keys.snap(sym), keys.outbox(sym))
        await client.aclose()


async def _started(hub: Hub, redis: aioredis.Redis) -> bool:
    clients = await redis.client_list()
    return any(c.get("cmd") == "xread" for c in clients)


def _has(got: list[bytes], n: int) -> bool:
    return len(got) == n


async def test_a_slow_page_is_dropped_and_the_others_keep_up(redis: aioredis.Redis) -> None:
    hub = Hub(redis, lambda: [("SPY", None)])
    slow = hub.subscribe("SPY")
    fast = hub.subscribe("SPY")
    got: list[bytes] = []

    async def drain() -> None:
        while (item := await fast.queue.get()) is not None:
            got.append(item)

    reader = asyncio.create_task(drain())
    try:
        await eventually(lambda: _started(hub, redis), "the reader's first XREAD")
        # one frame at a time, each seen by the fast page before the next: the fast page is
        # never behind however slow the machine, while the slow one's queue fills up
        for i in range(QUEUE_FRAMES + 5):
            await put(redis, i)
            await eventually(partial(_has, got, i + 1), f"frame {i} at the fast page")
        assert slow.dropped
        assert await _frames(slow) == [None]  # its stream ends; the browser reconnects
        assert not fast.dropped
        await put(redis, QUEUE_FRAMES + 5)  # the next event: the dropped page's slot is freed
        await eventually(partial(_has, got, QUEUE_FRAMES + 6), "the next frame at the fast page")
        assert hub.subscribers == 1
    finally:
        reader.cancel()
        await hub.stop()


async def test_the_sse_endpoint_streams_snapshots_and_alerts(
    redis: aioredis.Redis, page: Page
) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(page.url + "/api/live?symbol=SPY") as resp:
            assert resp.headers["Content-Type"] == "text/event-stream"
            assert (await resp.content.readline()).startswith(b"retry:")
            await eventually(lambda: _started(page.page.hub, redis), "the reader's XREAD")
            await put(redis, 7)
            await redis.xadd(keys.outbox("SPY"), outbox_fields(_alert(7, "SPY"), ["tty"]))
            events: list[dict[str, Any]] = []
            while len(events) < 2:
                line = await resp.content.readline()
                if line.startswith(b"data: "):
                    events.append(msgspec.json.decode(line[6:]))
            snap, alert = events
            assert snap["key"] == "SPY" and len(snap["net_gex"]) == 40
            assert alert["summary"] == "SPY alert 7"
    await eventually(lambda: page.page.hub.subscribers == 0, "the closed page unsubscribed")


async def test_a_page_that_stops_reading_is_disconnected_not_held_forever(
    redis: aioredis.Redis, page: Page, monkeypatch: pytest.MonkeyPatch
) -> None:
    # dropped from the hub (its queue full), its handler still waited in `resp.write` for a
    # client that never reads, forever (the peer ACKs with a zero window: no TCP timeout), with
    # its frames in the transport's buffer; and a dropped page no longer counts against
    # MAX_SUBSCRIBERS, so such connections piled up without any bound
    monkeypatch.setattr(routes, "WRITE_TIMEOUT_S", 0.5)
    port = int(page.url.rsplit(":", 1)[1])
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    try:
        sock.sendall(b"GET /api/live?symbol=SPY HTTP/1.1\r\nHost: t\r\n\r\n")
        hub = page.page.hub
        await eventually(lambda: hub.subscribers == 1 and _started(hub, redis), "subscribed")
        with capture_logs() as logs:
            i = 0
            # big frames (900 strikes) until the kernel's buffers and the transport's are full
            # and the page falls QUEUE_FRAMES behind; it is never read from
            while hub.subscribers:
                await put(redis, i, strikes=900, step=1.0)
                i += 1
                await asyncio.sleep(0.01)
            await eventually(
                lambda: any(e["event"] == "live page stopped reading; closed" for e in logs),
                "the stuck page's connection closed",
            )
        sock.setblocking(False)
        got = b""
        while True:  # what the kernel holds, then the end: the server closed the connection
            chunk = await asyncio.get_running_loop().sock_recv(sock, 1 << 16)
            if not chunk:
                break
            got += chunk
        assert not got.endswith(b"0\r\n\r\n")  # cut, not a stream that ended in order
    finally:
        sock.close()
