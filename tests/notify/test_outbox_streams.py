"""Delivery over one outbox per symbol: each daemon reads the outboxes it owns, order holds per
symbol, and the sent markers hold when a symbol's outbox moves to another daemon."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis
from aiohttp import web

from gex_alertd import keys
from gex_alertd.connections import read_entries
from gex_alertd.notify.dispatch import Dispatcher
from gex_alertd.notify.outbox import group_stats
from tests.notify.support import (
    Receiver,
    Responder,
    alert,
    enqueue,
    enqueue_together,
    make_config,
)
from tests.support.wait import eventually

SYMBOLS = ["SPY", "QQQ", "IWM", "DIA"]


# a failed send waits a minute before its retry: the alert stays held by its channel
HELD = {"retry_base_s": 60, "retry_max_s": 60}


def owner_of(stream: str) -> str:
    """A fixed split: SPY and QQQ (and the operator outbox) to a, the rest to b."""
    return "a" if keys.symbol_of_outbox(stream) in ("SPY", "QQQ", "*") else "b"


async def down(_n: int, _r: web.Request) -> web.Response:
    return web.Response(status=503)


@asynccontextmanager
async def receiving(responder: Responder | None = None) -> AsyncIterator[Receiver]:
    rx = await Receiver(responder=responder).start()
    try:
        yield rx
    finally:
        await rx.stop()


@asynccontextmanager
async def running(
    redis: aioredis.Redis,
    redis_url: str,
    rx: Receiver,
    *,
    consumer: str = "a",
    owns: Callable[[str], bool] | None = None,
    hook: dict[str, Any] | None = None,
    drain_timeout: float | None = None,
    **outbox: Any,
) -> AsyncIterator[Dispatcher]:
    """A started Dispatcher whose one channel, `ops`, is a webhook to `rx` (with `hook`'s
    settings), stopped on the way out."""
    channel = {"type": "webhook", "url": rx.url, **(hook or {})}
    cfg = make_config({"ops": channel}, redis_url, **outbox)
    d = Dispatcher(redis, cfg, consumer=consumer, owns=owns)
    await d.start()
    try:
        yield d
    finally:
        await d.stop(drain_timeout=drain_timeout)


async def test_each_daemon_delivers_the_outboxes_it_owns_once_in_order_per_symbol(
    redis: aioredis.Redis, redis_url: str
) -> None:
    def owns(name: str) -> Callable[[str], bool]:
        return lambda stream: owner_of(stream) == name

    async with (
        receiving() as rx,
        running(redis, redis_url, rx, consumer="a", owns=owns("a")) as a,
        running(redis, redis_url, rx, consumer="b", owns=owns("b")) as b,
    ):
        daemons = {"a": a, "b": b}
        n = 6
        for i in range(n):  # interleaved across symbols
            for s in SYMBOLS:
                await enqueue(redis, alert(i, s), ["ops"], poke=[a, b])
        await rx.wait_for(n * len(SYMBOLS))

        async def acked() -> bool:
            streams = [keys.outbox(s) for s in SYMBOLS]
            return (await group_stats(redis, "ops", streams))[0] == 0

        await eventually(acked, "every entry acked")
        ids = rx.ids()
        assert sorted(ids) == sorted(alert(i, s).id for i in range(n) for s in SYMBOLS)
        per_symbol: dict[str, list[str]] = defaultdict(list)
        for aid in ids:
            per_symbol[aid.split(":")[1]].append(aid)
        for s in SYMBOLS:  # the order each symbol's alerts were enqueued in
            assert per_symbol[s] == [alert(i, s).id for i in range(n)]
        # each daemon read only its own outboxes: a took SPY and QQQ, b IWM and DIA
        assert daemons["a"].workers["ops"].sent == 2 * n
        assert daemons["b"].workers["ops"].sent == 2 * n
        for s in SYMBOLS:
            consumers = await redis.xinfo_consumers(keys.outbox(s), keys.notify_group("ops"))
            assert {c["name"].decode() for c in consumers} == {owner_of(keys.outbox(s))}


async def test_a_moved_outbox_is_not_sent_twice_by_its_new_owner(
    redis: aioredis.Redis, redis_url: str
) -> None:
    """Daemon a read two SPY alerts and died: the first was sent (its marker written, the XACK
    lost), the second never went out. b takes SPY over: it claims both, sends only the second."""
    first, second = alert(1), alert(2)
    await enqueue(redis, first, ["ops"])
    await enqueue(redis, second, ["ops"])
    box = keys.outbox("SPY")
    got = read_entries(await redis.xreadgroup(keys.notify_group("ops"), "a", {box: ">"}))
    assert len(got[0][1]) == 2  # both held by a, unacknowledged
    await redis.set(keys.sent_marker("SPY", first.id, "ops"), 1)
    async with (
        receiving() as rx,
        running(redis, redis_url, rx, consumer="b", owns=lambda _s: True, claim_idle="300ms"),
    ):
        await rx.wait_for(1)

        async def acked() -> bool:
            return (await group_stats(redis, "ops", [box]))[0] == 0

        await eventually(acked, "both entries acked by b")
        assert rx.ids() == [second.id]


async def test_a_poke_for_an_outbox_another_daemon_owns_does_not_read_it(
    redis: aioredis.Redis, redis_url: str
) -> None:
    """A daemon commits for a target (SPY:<expiry>) whose symbol's outbox another daemon owns
    (targets and outboxes hash apart) and pokes SPY: it must leave SPY to its owner, whose sweep
    reads it. Reading it too makes two consumers hold one symbol's alerts: its order is lost,
    and a crash of the non-owner leaves them waiting for claim_idle."""
    async with (
        receiving() as rx,
        running(redis, redis_url, rx, owns=lambda s: owner_of(s) == "a") as a,
    ):
        worker = a.workers["ops"]
        await enqueue(redis, alert(1, "IWM"), ["ops"])  # owned by b
        await enqueue(redis, alert(1, "QQQ"), ["ops"])  # owned by a
        a.poke("IWM")
        a.poke("QQQ")
        await eventually(lambda: not worker.pokes.dirty, "the pokes taken")
        # a later alert of a's own: once it is sent, whatever read the pokes above has run
        await enqueue(redis, alert(2, "QQQ"), ["ops"])
        a.poke("QQQ")
        await rx.wait_for(2)
        assert sorted(rx.ids()) == sorted([alert(1, "QQQ").id, alert(2, "QQQ").id])
        assert (await group_stats(redis, "ops", [keys.outbox("IWM")]))[0] == 1
        consumers = await redis.xinfo_consumers(keys.outbox("IWM"), keys.notify_group("ops"))
        assert [c["name"] for c in consumers] == []  # never read there by a


async def test_the_buffer_stays_bounded_when_many_outboxes_hold_a_backlog(
    redis: aioredis.Redis, redis_url: str
) -> None:
    """A read takes up to its count from EACH stream: with many outboxes holding a backlog (a
    receiver down for a while, 5,000 symbols) one sweep must not pull them all into memory.
    MAX_BUFFER bounds what a channel holds, give or take one entry per stream."""
    from gex_alertd.notify.channel_worker import MAX_BUFFER
    from tests.notify.support import WATCHED

    per_stream = MAX_BUFFER // len(WATCHED) + 10  # the backlog: more than MAX_BUFFER in all
    for i in range(per_stream):
        await enqueue_together(redis, [alert(i, s) for s in WATCHED], ["ops"])
    async with (
        receiving(down) as rx,
        running(redis, redis_url, rx, hook=HELD, drain_timeout=0) as d,
    ):
        worker = d.workers["ops"]
        await eventually(lambda: len(worker.buffer) >= MAX_BUFFER, "the buffer filled")
        assert len(worker.buffer) <= MAX_BUFFER + len(WATCHED)


async def test_pending_counts_what_this_daemon_reads_not_an_outbox_moved_away(
    redis: aioredis.Redis, redis_url: str
) -> None:
    """healthz's pending and lag are this daemon's backlog: once SPY's outbox moved to b, a no
    longer reports what b holds there (summed over daemons it was counted twice, and a's alarm
    fired for alerts a cannot deliver)."""
    mine = {"a": {"SPY", "QQQ"}, "b": set()}

    def owns(name: str) -> Callable[[str], bool]:
        return lambda stream: keys.symbol_of_outbox(stream) in mine[name]

    async with (
        receiving() as rx_a,
        receiving(down) as rx_b,
        running(redis, redis_url, rx_a, owns=owns("a")) as a,
        running(redis, redis_url, rx_b, consumer="b", owns=owns("b"), hook=HELD,
                drain_timeout=0) as b,
    ):  # fmt: skip
        await enqueue(redis, alert(1), ["ops"])
        await rx_a.wait_for(1)
        mine["a"], mine["b"] = {"QQQ"}, {"SPY"}  # SPY's outbox moves to b
        a.streams.changed()
        b.streams.changed()
        # once a sent this, its loop turns see the move: SPY's next alert is b's alone
        await enqueue(redis, alert(1, "QQQ"), ["ops"])
        a.poke("QQQ")
        await rx_a.wait_for(2)
        await enqueue(redis, alert(2), ["ops"], poke=[a, b])  # read by b alone, its owner now
        await rx_b.wait_for(1, status=503)  # b holds it, its receiver down
        assert (await b.health())["ops"]["pending"] == 1
        assert (await a.health())["ops"]["pending"] == 0


async def test_pending_counts_outboxes_not_read_while_the_buffer_is_full(
    redis: aioredis.Redis, redis_url: str
) -> None:
    """A full buffer stops reading; alerts arriving meanwhile on an outbox this channel had not
    read from yet are backlog all the same and count in pending."""
    from gex_alertd.notify.channel_worker import MAX_BUFFER

    for i in range(0, MAX_BUFFER + 50, 50):
        await enqueue_together(redis, [alert(j) for j in range(i, i + 50)], ["ops"])
    async with (
        receiving(down) as rx,
        running(redis, redis_url, rx, hook=HELD, drain_timeout=0) as d,
    ):
        worker = d.workers["ops"]
        await eventually(lambda: len(worker.buffer) >= MAX_BUFFER, "the buffer filled")
        for i in range(5):
            await enqueue(redis, alert(i, "QQQ"), ["ops"])
        assert (await d.health())["ops"]["pending"] == MAX_BUFFER + 50 + 5


async def test_a_starting_daemon_does_not_read_the_outboxes_live_members_own(
    redis: aioredis.Redis, redis_url: str
) -> None:
    """Until its first heartbeat a daemon knows no other member. Its channels must not read
    the outboxes meanwhile: their first sweep took the new alerts of every symbol, the live
    members' too (two readers of one symbol: its order lost, see the poke test)."""
    from gex_alertd import config as config_mod
    from gex_alertd.app import Daemon
    from gex_alertd.member import instance_id
    from gex_alertd.ownership import Membership, owner

    rx = await Receiver().start()
    other = "zz-other-daemon"
    # the split depends on this daemon's name (host, config, Redis port): with 20 symbols
    # both members own some in all but ~2 runs in a million
    symbols = [f"{p}{i}" for p in "SA" for i in range(10)]
    tree: dict[str, object] = {
        "source": {"kind": "simulator", "simulator": {"speed": 10, "cache_s": 0}},
        "redis": {"url": redis_url},
        "watch": {"interval_s": 60, "symbols": symbols},
        "channels": {"ops": {"type": "webhook", "url": rx.url}},
        "ops": {"listen": None},
    }
    me = instance_id(config_mod.parse(tree, "test"))
    members = sorted([me, other])
    theirs = [s for s in symbols if owner(s, members) == other]
    ours = [s for s in symbols if owner(s, members) == me]
    assert theirs and ours  # the symbols split between the two
    await Membership(redis, other, timeout_s=600).beat()  # a live member
    await enqueue(redis, alert(1, theirs[0]), ["ops"])
    daemon = Daemon(config_mod.parse(tree, "test"))
    try:
        await daemon.start()
        assert daemon.dispatcher is not None
        # once this one of ours is sent, the turns after the first beat have run
        await enqueue(redis, alert(1, ours[0]), ["ops"])
        daemon.dispatcher.poke(ours[0])
        await rx.wait_for(1)
        assert rx.ids() == [alert(1, ours[0]).id]
        box = keys.outbox(theirs[0])
        consumers = await redis.xinfo_consumers(box, keys.notify_group("ops"))
        assert [c["name"] for c in consumers] == []  # left to its owner
    finally:
        await daemon.shutdown()
        await rx.stop()


async def test_an_outbox_deleted_under_a_held_alert_does_not_stop_the_channel(
    redis: aioredis.Redis, redis_url: str
) -> None:
    """An operator deletes a dropped symbol's keys (or its channel's group) while the channel
    holds one of its alerts in backoff: keeping that alert ours (XCLAIM) answers NOGROUP. The
    channel must go on: the alert it holds and the other symbols' alerts still go out."""
    deleted = asyncio.Event()

    async def fail_once(n: int, _r: web.Request) -> web.Response | None:
        if n == 1:
            await deleted.wait()
            return web.Response(status=503)
        return None

    # held in backoff longer than the keep-it-ours interval (claim_idle / 3)
    hook = {"retry_base_s": 1, "retry_max_s": 1}
    async with (
        receiving(fail_once) as rx,
        running(redis, redis_url, rx, hook=hook, claim_idle="1s"),
    ):
        await enqueue(redis, alert(1, "DIA"), ["ops"])
        await eventually(lambda: len(rx.hits) == 1, "the first send under way")
        await redis.delete(keys.outbox("DIA"))
        deleted.set()
        await enqueue(redis, alert(1, "QQQ"), ["ops"])
        await rx.wait_for(2)
        assert sorted(rx.ids()) == sorted([alert(1, "DIA").id, alert(1, "QQQ").id])


async def test_an_outbox_of_a_symbol_no_longer_watched_is_still_delivered(
    redis: aioredis.Redis, redis_url: str
) -> None:
    """Alerts left in the outbox of a symbol dropped from the watchlist (or written there by
    `migrate` or `replay --send`) are found by SCAN and delivered by that outbox's owner."""
    dropped = alert(1, "ZZZT")
    await enqueue(redis, dropped, ["ops"])
    async with receiving() as rx, running(redis, redis_url, rx, consumer="t1") as d:
        assert "ZZZT" not in [t.symbol for t in d.cfg.watch.entries()]
        await rx.wait_for(1)
        assert rx.ids() == [dropped.id]
