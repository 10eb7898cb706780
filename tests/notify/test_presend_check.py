"""An alert's round trips after its read, on one node (notify/channel_worker.py): a new alert's
sent marker is checked in the silence check's round trip, right before its send (one round trip
less an alert; a marker written meanwhile still stops the send, a silence added meanwhile still
holds it), and the send is recorded by the worker itself (no hop through the recorder task)."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from gex_alertd import keys
from gex_alertd.notify import outbox as outbox_mod
from gex_alertd.notify import silences as silences_mod
from gex_alertd.notify.channel_worker import ChannelWorker
from gex_alertd.notify.console import ConsoleChannel, ConsoleNotifier
from gex_alertd.notify.outbox import Outbox
from gex_alertd.notify.silences import Matchers, SilenceStore, list_silenced
from gex_alertd.notify.streams import OutboxStreams
from tests.notify.support import alert, enqueue
from tests.support.redis_server import RedisServer
from tests.support.wait import WAIT_S

CHANNEL = "tty"


class Worker:
    """A console channel's worker driven step by step (no run loop): its recorder task runs,
    so a send's marker and XACK are written as in the daemon."""

    def __init__(self, redis: aioredis.Redis, store: SilenceStore) -> None:
        self.out = io.StringIO()
        cfg = ConsoleChannel(color="never")
        self.outbox = Outbox(redis, CHANNEL, "c1", 3600)
        self.w = ChannelWorker(
            CHANNEL,
            cfg,
            ConsoleNotifier(CHANNEL, cfg, stream=self.out),
            self.outbox,
            None,
            30.0,
            OutboxStreams(["SPY"]),
            silences=store,
        )
        self.recorder: asyncio.Task[None] | None = None

    async def read_new(self) -> None:
        got = await self.outbox.read_new([keys.outbox("SPY")], 10)
        await self.w.admit(got, new=True)

    def sent(self) -> list[str]:
        return [line.rsplit("[", 1)[1].rstrip("]") for line in self.out.getvalue().splitlines()]


@pytest.fixture
async def worker(redis: aioredis.Redis) -> AsyncIterator[Worker]:
    store = SilenceStore(redis)
    await store.check_many([alert(0)], CHANNEL)  # cached, as in a running daemon
    await redis.script_load(outbox_mod.LUA)  # loaded, as after a daemon's first send
    w = Worker(redis, store)
    w.recorder = asyncio.create_task(w.w._recorder())
    yield w
    w.recorder.cancel()


async def test_a_new_alert_is_checked_and_sent_in_two_round_trips_after_its_read(
    redis: aioredis.Redis, worker: Worker, exchanges: list[int]
) -> None:
    assert silences_mod.packed is outbox_mod.packed  # the same module: both counted
    await enqueue(redis, alert(1), [CHANNEL])
    trips = exchanges
    trips.clear()
    await worker.read_new()
    assert trips == [1]  # the read (XREADGROUP); no marker check of its own
    trips.clear()
    await worker.w.flush()
    # the marker (EXISTS) with the silence check (GET version, TIME), then outbox.lua
    assert trips == [3, 1]
    assert worker.sent() == [alert(1).id]
    marker = keys.sent_marker("SPY", alert(1).id, CHANNEL)
    assert await redis.exists(marker)
    pending = await redis.xpending(keys.outbox("SPY"), keys.notify_group(CHANNEL))
    assert pending["pending"] == 0


async def test_a_marker_written_while_a_new_alert_waits_stops_its_send(
    redis: aioredis.Redis, worker: Worker
) -> None:
    # another daemon (the stream's previous owner) delivered alert 1 after this one read it:
    # the marker is read right before the send, so it is acked and not sent twice
    for i in (1, 2):
        await enqueue(redis, alert(i), [CHANNEL])
    await worker.read_new()
    await redis.set(keys.sent_marker("SPY", alert(1).id, CHANNEL), 1)
    await worker.w.flush()  # alert 1: acked, not sent
    await worker.w.flush()  # alert 2: sent
    assert worker.sent() == [alert(2).id]
    assert worker.w.buffer == {}
    pending = await redis.xpending(keys.outbox("SPY"), keys.notify_group(CHANNEL))
    assert pending["pending"] == 0


async def test_a_silence_added_while_a_new_alert_waits_holds_it_in_the_folded_check(
    redis: aioredis.Redis, worker: Worker
) -> None:
    await enqueue(redis, alert(1), [CHANNEL])
    await worker.read_new()
    # added by an operator (another process) after the read, before the send
    silence = await SilenceStore(redis).add(Matchers(rule="spy-flip", symbol="SPY"), 3600)
    await worker.w.flush()
    assert worker.sent() == []
    [record] = await list_silenced(redis)
    assert (record.alert_id, record.silence) == (alert(1).id, silence.id)
    pending = await redis.xpending(keys.outbox("SPY"), keys.notify_group(CHANNEL))
    assert pending["pending"] == 0


async def test_a_send_is_recorded_by_the_worker_itself_when_nothing_else_waits(
    redis: aioredis.Redis,
) -> None:
    # no recorder task here: the flush returns once the marker and the XACK are written
    store = SilenceStore(redis)
    w = Worker(redis, store)
    await enqueue(redis, alert(1), [CHANNEL])
    await w.read_new()
    await asyncio.wait_for(w.w.flush(), WAIT_S)
    assert w.sent() == [alert(1).id]
    assert w.w.unrecorded == {}
    assert await redis.exists(keys.sent_marker("SPY", alert(1).id, CHANNEL))
    pending = await redis.xpending(keys.outbox("SPY"), keys.notify_group(CHANNEL))
    assert pending["pending"] == 0


async def test_a_record_that_fails_is_written_by_the_recorder_once_redis_is_back(
    private_redis: RedisServer,
) -> None:
    client = aioredis.Redis.from_url(private_redis.url)
    store = SilenceStore(client)
    w = Worker(client, store)
    real_send, real_until = w.w.notifier.send, w.w._until_recorded
    handed_over = asyncio.Event()

    async def send_then_redis_goes(alerts: Any) -> Any:
        out = await real_send(alerts)
        private_redis.kill()  # after the receiver took it, before its record
        return out

    async def until_recorded() -> None:
        handed_over.set()
        await real_until()

    w.w.notifier.send = send_then_redis_goes  # type: ignore[method-assign]
    w.w._until_recorded = until_recorded  # type: ignore[method-assign]
    recorder = asyncio.create_task(w.w._recorder())
    try:
        await enqueue(client, alert(1), [CHANNEL])
        await w.read_new()
        flush = asyncio.create_task(w.w.flush())
        await asyncio.wait_for(handed_over.wait(), WAIT_S)  # the worker's own write failed
        assert not flush.done()  # no next send before the record is written
        private_redis.start()
        await asyncio.wait_for(flush, WAIT_S)
        assert w.sent() == [alert(1).id]
        assert await client.exists(keys.sent_marker("SPY", alert(1).id, CHANNEL))
        pending = await client.xpending(keys.outbox("SPY"), keys.notify_group(CHANNEL))
        assert pending["pending"] == 0
    finally:
        recorder.cancel()
        await client.aclose()
