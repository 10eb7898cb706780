"""On one node a new alert's sent marker is checked in the silence check's round trip, right
before its send (notify/channel_worker.py): one round trip less an alert, a marker written
meanwhile still stops the send, and a silence added meanwhile still holds it."""

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


def count_exchanges(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The commands of each packed round trip the outbox and the silence check make."""
    trips: list[int] = []
    real = outbox_mod.packed.exchange

    async def counting(r: aioredis.Redis, payload: bytes, expected: int, *a: Any) -> list[Any]:
        trips.append(expected)
        return await real(r, payload, expected, *a)

    monkeypatch.setattr(outbox_mod.packed, "exchange", counting)
    assert silences_mod.packed is outbox_mod.packed  # the same module: both counted
    return trips


async def test_a_new_alert_is_checked_and_sent_in_two_round_trips_after_its_read(
    redis: aioredis.Redis, worker: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    await enqueue(redis, alert(1), [CHANNEL])
    trips = count_exchanges(monkeypatch)
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
