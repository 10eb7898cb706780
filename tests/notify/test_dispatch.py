"""The pipeline against a real Redis and real HTTP receivers."""

from __future__ import annotations

import asyncio
from collections import Counter

import msgspec
import redis.asyncio as aioredis
from aiohttp import web

from gex_alertd import keys
from gex_alertd.connections import entries, entry_key, read_entries
from gex_alertd.model import outbox_fields
from gex_alertd.notify.base import Ok
from gex_alertd.notify.dispatch import Dispatcher
from gex_alertd.notify.outbox import list_dead, refuse_wrong_types
from gex_alertd.ops import metrics
from tests.notify.support import SECRET, Receiver, alert, enqueue, enqueue_together, make_config
from tests.support.wait import eventually


def hook(url: str, **kw: object) -> dict[str, object]:
    return {"type": "webhook", "url": url, "retry_base_s": 0.05, "retry_max_s": 0.2, **kw}


async def _refuse(_n: int, _r: web.Request) -> web.Response:
    return web.Response(status=400, text="bad")


async def _blocked(d: Dispatcher) -> list[str]:
    """The keys of another type the channel `ops` waits on (/healthz)."""
    return list((await d.health())["ops"]["blocked"])


async def _is_blocked(d: Dispatcher) -> bool:
    return bool(await _blocked(d))


async def _clear(d: Dispatcher) -> bool:
    return not await _blocked(d)


async def test_routes_filters_and_delivers_each_alert_once(
    redis: aioredis.Redis, redis_url: str
) -> None:
    ops, desk = await Receiver(secret=SECRET).start(), await Receiver().start()
    cfg = make_config(
        {"ops": hook(ops.url, secret=SECRET), "desk": hook(desk.url, min_severity="critical")},
        redis_url,
    )
    d = Dispatcher(redis, cfg, consumer="t1")
    await d.start()
    try:
        await enqueue(redis, alert(1), ["ops"], poke=[d])
        await enqueue(redis, alert(2, "QQQ"), ["ops", "desk"], poke=[d])  # desk filters it
        await enqueue(redis, alert(3, "IWM", "critical"), ["desk", "ops"], poke=[d])
        await ops.wait_for(3)
        await desk.wait_for(1)
        # one outbox per symbol: order is kept per symbol, not across symbols
        assert sorted(ops.ids()) == sorted(
            alert(i, s).id for i, s in ((1, "SPY"), (2, "QQQ"), (3, "IWM"))
        )
        assert all(h.verified for h in ops.hits)
        assert desk.ids() == [alert(3, "IWM").id]

        async def acked() -> bool:
            h = await d.health()
            return h["ops"]["pending"] == 0 and h["desk"]["pending"] == 0

        await eventually(acked, "ops and desk acked every entry")
        assert await redis.exists(keys.sent_marker("SPY", alert(1).id, "ops"))
        assert not await redis.exists(keys.sent_marker("QQQ", alert(2, "QQQ").id, "desk"))
        assert metrics.OUTBOX_PENDING.labels("ops")._value.get() == 0
    finally:
        await d.stop()
        await ops.stop()
        await desk.stop()


async def test_group_window_sends_one_message_listing_the_alerts(
    redis: aioredis.Redis, redis_url: str
) -> None:
    rx = await Receiver().start()
    cfg = make_config({"ops": hook(rx.url, group_wait="300ms", group_interval="1s")}, redis_url)
    d = Dispatcher(redis, cfg, consumer="t1")
    await d.start()
    try:
        symbols = ["SPY", "QQQ", "IWM", "DIA", "TLT"]
        # one by one, a slow test process could let group_wait pass between two of them
        await enqueue_together(redis, [alert(i, s) for i, s in enumerate(symbols)], ["ops"])
        await rx.wait_for(1)

        async def acked() -> bool:
            return (await d.health())["ops"]["pending"] == 0

        await eventually(acked, "ops acked every entry")
        assert len(rx.hits) == 1
        body = msgspec.json.decode(rx.hits[0].body)
        assert body["type"] == "group" and body["count"] == 5
        assert {a["symbol"] for a in body["alerts"]} == set(symbols)
        assert rx.hits[0].headers["webhook-id"] == body["id"]
    finally:
        await d.stop()
        await rx.stop()


async def test_marker_prevents_a_second_send(redis: aioredis.Redis, redis_url: str) -> None:
    rx = await Receiver().start()
    d = Dispatcher(redis, make_config({"ops": hook(rx.url)}, redis_url), consumer="t1")
    await d.start()
    try:
        await redis.set(keys.sent_marker("SPY", alert(1).id, "ops"), 1)  # "sent before the crash"
        await enqueue(redis, alert(1), ["ops"])
        await enqueue(redis, alert(2), ["ops"])
        await rx.wait_for(1)

        async def drained() -> bool:
            return (await d.health())["ops"]["pending"] == 0

        await eventually(drained, "ops acked every entry")
        assert rx.ids() == [alert(2).id]
    finally:
        await d.stop()
        await rx.stop()


async def test_permanent_failures_dead_letter_without_blocking_others(
    redis: aioredis.Redis, redis_url: str
) -> None:
    async def always_500(_n: int, _r: web.Request) -> web.Response:
        return web.Response(status=500, text="database on fire")

    async def gone(_n: int, _r: web.Request) -> web.Response:
        return web.Response(status=404, text="channel_is_archived")

    bad, archived, good = (
        await Receiver(responder=always_500).start(),
        await Receiver(responder=gone).start(),
        await Receiver().start(),
    )
    cfg = make_config(
        {
            "bad": hook(bad.url, max_attempts=3),
            "archived": hook(archived.url),
            "good": hook(good.url),
        },
        redis_url,
    )
    d = Dispatcher(redis, cfg, consumer="t1")
    await d.start()
    try:
        for i in range(4):
            await enqueue(redis, alert(i), ["bad", "archived", "good"], poke=[d])
        await good.wait_for(4)

        async def all_dead() -> bool:
            return await redis.xlen(keys.DEAD) == 8

        await eventually(all_dead, "8 dead letters")
        dead = await list_dead(redis)
        by_channel = Counter(x.channel for x in dead)
        assert by_channel == {"bad": 4, "archived": 4}
        bad_reason = next(x.reason for x in dead if x.channel == "bad")
        assert bad_reason == "gave up after 3 attempts: HTTP 500: database on fire"
        gone_reason = next(x.reason for x in dead if x.channel == "archived")
        assert gone_reason == "HTTP 404: channel_is_archived"
        assert {x.alert_id for x in dead} == {alert(i).id for i in range(4)}
        assert len(bad.hits) == 12 and len(archived.hits) == 4  # 3 tries each; 1 try each
        h = await d.health()
        assert h["bad"]["pending"] == 0 and h["bad"]["dead"] == 4
        assert metrics.DEAD_LETTERS.labels("archived")._value.get() >= 4
    finally:
        await d.stop()
        for r in (bad, archived, good):
            await r.stop()


async def test_malformed_entry_goes_to_dead_letters(redis: aioredis.Redis, redis_url: str) -> None:
    rx = await Receiver().start()
    d = Dispatcher(redis, make_config({"ops": hook(rx.url)}, redis_url), consumer="t1")
    await d.start()
    try:
        await redis.xadd(
            keys.outbox("SPY"), {"id": "x1", "channels": "ops", "symbol": "SPY", "event": "{"}
        )
        # deeper than the parser goes: its RecursionError crashed the channel's worker
        deep = '{"x": ' + "[" * 5_000 + "]" * 5_000 + "}"
        await redis.xadd(
            keys.outbox("SPY"), {"id": "x2", "channels": "ops", "symbol": "SPY", "event": deep}
        )
        await enqueue(redis, alert(1), ["ops"])
        await rx.wait_for(1)

        async def dead() -> bool:
            return await redis.xlen(keys.DEAD) == 2

        await eventually(dead, "2 dead letters")
        d1, d2 = await list_dead(redis)
        assert d1.alert_id == "x1" and "malformed event JSON" in d1.reason
        assert d2.alert_id == "x2" and "malformed event JSON" in d2.reason
    finally:
        await d.stop()
        await rx.stop()


async def test_stuck_entries_of_a_dead_consumer_are_claimed(
    redis: aioredis.Redis, redis_url: str
) -> None:
    rx = await Receiver().start()
    cfg = make_config({"ops": hook(rx.url)}, redis_url, claim_idle="200ms")
    for i in range(3):
        await enqueue(redis, alert(i), ["ops"])
    # another daemon read them and died before sending
    got = read_entries(
        await redis.xreadgroup(
            keys.notify_group("ops"), "ghost", {keys.outbox("SPY"): ">"}, count=10
        )
    )
    assert len(got[0][1]) == 3
    d = Dispatcher(redis, cfg, consumer="t2")
    await d.start()
    try:
        await rx.wait_for(3)
        assert sorted(rx.ids()) == sorted(alert(i).id for i in range(3))
    finally:
        await d.stop()
        await rx.stop()


async def test_alerts_held_through_a_slow_send_are_not_claimed_and_sent_again_elsewhere(
    redis: aioredis.Redis, redis_url: str
) -> None:
    # d1's first send hangs in the receiver until released. Meanwhile d1 keeps what it holds
    # (that alert, and the one queued behind it) fresh in the group's PEL, so d2's XAUTOCLAIM
    # leaves them be. Only the sending loop touched them: a send that outlasted claim_idle (an
    # email's timeout_s is per SMTP step, so a tarpitting server makes one send minutes long)
    # let another daemon claim both and send them too
    release = asyncio.Event()

    async def hold_the_first(n: int, _r: web.Request) -> None:
        if n == 1:
            await release.wait()

    rx = await Receiver(responder=hold_the_first).start()
    # claim_idle 3 s: d1 touches every second, a margin of 2 s for a stalled loop
    cfg = make_config({"ops": hook(rx.url, timeout_s=300)}, redis_url, claim_idle="3s")
    await enqueue(redis, alert(1), ["ops"])
    await enqueue(redis, alert(2), ["ops"])
    d1, d2 = Dispatcher(redis, cfg, consumer="d1"), Dispatcher(redis, cfg, consumer="d2")
    await d1.start()
    try:
        await rx.wait_for(1, status=None)  # d1's send of alert 1 is in the receiver, held
        await redis.config_resetstat()
        await d2.start()

        async def looked() -> bool:  # d2's passes of autoclaim.lua, one each 1.5 s
            stats = await redis.info("commandstats")
            return int(stats.get("cmdstat_evalsha", {}).get("calls", 0)) >= 4

        await eventually(looked, "four XAUTOCLAIM passes of d2: past claim_idle")
        assert len(rx.hits) == 1, rx.ids(None)
        release.set()
        await rx.wait_for(2)
        assert sorted(rx.ids()) == sorted(alert(i).id for i in (1, 2))
    finally:
        release.set()
        await d2.stop()
        await d1.stop()
        await rx.stop()


async def test_stop_leaves_undelivered_entries_for_the_next_run(
    redis: aioredis.Redis, redis_url: str
) -> None:
    release = asyncio.Event()

    async def slow(_n: int, _r: web.Request) -> None:
        await release.wait()

    rx = await Receiver(responder=slow).start()
    cfg = make_config({"ops": hook(rx.url)}, redis_url)
    d = Dispatcher(redis, cfg, consumer="t1")
    await d.start()
    # together, so the worker reads all three before its first send blocks it, however the
    # round trips of this test and of the worker interleave
    await enqueue_together(redis, [alert(i) for i in range(3)], ["ops"])
    await rx.wait_for(1, status=None)
    await d.stop(drain_timeout=0.2)  # the first send is in flight: cancelled, not acked
    pending = await redis.xpending(keys.outbox("SPY"), keys.notify_group("ops"))
    assert pending["pending"] == 3
    release.set()
    rx.hits.clear()
    d2 = Dispatcher(redis, cfg, consumer="t1")  # same consumer: re-reads its own PEL
    await d2.start()
    try:
        await rx.wait_for(3)
        assert rx.ids() == [alert(i).id for i in range(3)]
    finally:
        await d2.stop()
        await rx.stop()


async def test_new_channel_gets_no_history_but_restart_misses_nothing(
    redis: aioredis.Redis, redis_url: str
) -> None:
    rx = await Receiver().start()
    # before the channel's group ever existed (written without creating it, as no writer of
    # ours does): a group a reader creates starts at `$`
    await redis.xadd(keys.outbox("SPY"), outbox_fields(alert(0), ["ops"]))
    cfg = make_config({"ops": hook(rx.url)}, redis_url)
    d = Dispatcher(redis, cfg, consumer="t1")
    await d.start()
    await enqueue(redis, alert(1), ["ops"])
    await rx.wait_for(1)
    await d.stop()
    await enqueue(redis, alert(2), ["ops"])  # while the daemon is down
    d = Dispatcher(redis, cfg, consumer="t1")
    await d.start()
    try:
        await rx.wait_for(2)
        assert rx.ids() == [alert(1).id, alert(2).id]
    finally:
        await d.stop()
        await rx.stop()


async def test_reload_adds_and_changes_channels(redis: aioredis.Redis, redis_url: str) -> None:
    a, b = await Receiver().start(), await Receiver().start()
    d = Dispatcher(redis, make_config({"ops": hook(a.url)}, redis_url), consumer="t1")
    await d.start()
    try:
        await d.reload(make_config({"ops": hook(b.url), "new": hook(a.url)}, redis_url))
        await enqueue(redis, alert(1), ["ops", "new"])
        await a.wait_for(1)
        await b.wait_for(1)
        assert set(d.workers) == {"ops", "new"}
        assert isinstance(await d.send_test("new"), Ok)
        await a.wait_for(2)
        assert a.ids()[1].startswith("test-new-")
    finally:
        await d.stop()
        await a.stop()
        await b.stop()


async def test_secrets_never_reach_logs_or_dead_letters(
    redis: aioredis.Redis, redis_url: str
) -> None:
    from structlog.testing import capture_logs

    from tests.support.redis_server import free_port

    down = f"http://127.0.0.1:{free_port()}/hooks/T0/B0/supersecretpath1"
    broken = "http://127.0.0.1:99999999/hooks/T0/B0/supersecretpath2"
    valid = broken.replace("99999999", "9")
    cfg = make_config({"down": hook(down, max_attempts=2), "broken": hook(valid)}, redis_url)
    # the config check refuses that port; the delivery side must still cope with what slips by
    slipped = msgspec.structs.replace(cfg.channels["broken"], url=broken)
    cfg = msgspec.structs.replace(cfg, channels=dict(cfg.channels, broken=slipped))
    d = Dispatcher(redis, cfg, consumer="t1")
    with capture_logs() as logs:
        await d.start()
        try:
            await enqueue(redis, alert(1), ["down", "broken"])

            async def both_dead() -> bool:
                return await redis.xlen(keys.DEAD) == 2

            await eventually(both_dead, "2 dead letters")
        finally:
            await d.stop()
    dead = await list_dead(redis)
    text = repr(logs) + repr(dead) + repr(await d.health() if d.workers else {})
    assert "supersecretpath" not in text
    reasons = {x.channel: x.reason for x in dead}
    assert "InvalidUrl" in reasons["broken"] and "***" in reasons["broken"]
    assert reasons["down"].startswith("gave up after 2 attempts: ClientConnectorError")
    assert any(e.get("event") == "delivery failed, will retry" for e in logs)


async def test_trim_keeps_what_any_group_still_needs(redis: aioredis.Redis) -> None:
    from gex_alertd.notify.outbox import ensure_groups, trim

    box = keys.outbox("SPY")
    await ensure_groups(redis, [box], ["a", "b", "gone"])
    ids = [await enqueue(redis, alert(i), ["a", "b"]) for i in range(300)]
    # a has read and acked everything, b holds entry 150 pending, "gone" is no longer configured
    got = read_entries(await redis.xreadgroup(keys.notify_group("a"), "c", {box: ">"}))
    await redis.xack(box, keys.notify_group("a"), *[e for e, _ in got[0][1]])
    got = read_entries(await redis.xreadgroup(keys.notify_group("b"), "c", {box: ">"}))
    await redis.xack(box, keys.notify_group("b"), *[e for e, _ in got[0][1][:150]])
    now = 1e12  # far future: the retention does not protect anything
    minid = await trim(redis, box, ["a", "b"], keep_s=60, now_s=now)
    assert minid == ids[150]
    first = entries(await redis.xrange(box, count=1))[0][0].decode()
    assert entry_key(first) <= entry_key(ids[150])  # approximate: never past what is needed
    assert await redis.xlen(box) < 300
    # the recent-history floor wins when it is older
    assert await trim(redis, box, ["a", "b"], keep_s=60, now_s=0) is None


async def test_trim_survives_the_last_pending_entry_acked_while_it_looks(
    redis: aioredis.Redis, redis_url: str
) -> None:
    """The dispatcher trims the streams its channels just acked on, while they go on acking: an
    entry pending when trim read the groups can be acked before it asks for the oldest one
    (XPENDING then has no `min`). That must not raise: it killed the stats loop, and with it
    every later trim, SCAN and gauge update, silently."""
    from gex_alertd.notify.outbox import trim

    box = keys.outbox("SPY")
    eid = await enqueue(redis, alert(1), ["ops"])
    await redis.xreadgroup(keys.notify_group("ops"), "c", {box: ">"})
    # one connection, FIFO: trim's XINFO, then this XACK, then trim's XPENDING
    client = aioredis.Redis.from_url(redis_url, single_connection_client=True)
    try:
        minid, acked = await asyncio.gather(
            trim(client, box, ["ops"], keep_s=60, now_s=1e12),
            client.xack(box, keys.notify_group("ops"), eid),
        )
    finally:
        await client.aclose()
    assert acked == 1
    assert minid is not None and entry_key(minid) > entry_key(eid)  # all acked: all trimmable


async def test_group_interval_spaces_later_batches(redis: aioredis.Redis, redis_url: str) -> None:
    rx = await Receiver().start()
    cfg = make_config({"ops": hook(rx.url, group_wait="300ms", group_interval="800ms")}, redis_url)
    d = Dispatcher(redis, cfg, consumer="t1")
    await d.start()
    try:
        await enqueue_together(redis, [alert(i, f"S{i}") for i in range(3)], ["ops"], poke=[d])
        await rx.wait_for(1)
        # when the first batch left; the receiver's arrival stamp would include its transit
        first_flush = d.workers["ops"].last_flush
        await enqueue_together(redis, [alert(i, f"S{i}") for i in range(3, 5)], ["ops"], poke=[d])
        await rx.wait_for(2)
        first, second = (msgspec.json.decode(h.body) for h in rx.hits)
        assert first["count"] == 3 and second["count"] == 2
        # lower bound only: group_interval holds the second batch back, lateness is allowed
        assert rx.hits[1].at - first_flush >= 0.8
    finally:
        await d.stop()
        await rx.stop()


async def test_dead_letter_retried_is_delivered_once(redis: aioredis.Redis, redis_url: str) -> None:
    from gex_alertd.notify.outbox import retry_dead

    async def gone_once(n: int, _r: web.Request) -> web.Response | None:
        return web.Response(status=422) if n == 1 else None

    rx, other = await Receiver(responder=gone_once).start(), await Receiver().start()
    cfg = make_config({"ops": hook(rx.url), "other": hook(other.url)}, redis_url)
    d = Dispatcher(redis, cfg, consumer="t1")
    await d.start()
    try:
        await enqueue(redis, alert(1), ["ops", "other"])
        await other.wait_for(1)

        async def dead() -> bool:
            return await redis.xlen(keys.DEAD) == 1

        await eventually(dead, "1 dead letter")
        await retry_dead(redis, await list_dead(redis))
        await rx.wait_for(1)

        async def settled() -> bool:
            h = await d.health()
            return h["ops"]["pending"] == 0 and h["other"]["pending"] == 0

        # once both channels acked everything, no further send can come
        await eventually(settled, "ops and other acked every entry")
        assert rx.ids() == [alert(1).id] and other.ids() == [alert(1).id]
        assert await redis.xlen(keys.DEAD) == 0
    finally:
        await d.stop()
        await rx.stop()
        await other.stop()


async def test_a_dead_letter_written_twice_and_retried_is_delivered_once(
    redis: aioredis.Redis, redis_url: str
) -> None:
    """A crash between a dead letter's XADD and its XACK leaves the entry pending: it is judged
    again and dead-lettered a second time (notify/outbox.py allows that). `outbox retry` puts
    both copies back on the outbox, one alert id twice: the receiver must get it once."""
    from gex_alertd.notify.outbox import Outbox, retry_dead

    await enqueue(redis, alert(1), ["ops"])
    crashed = Outbox(redis, "ops", "crashed", dedup_ttl_s=3600)
    got = await crashed.read_new([keys.outbox("SPY")], 10)
    assert len(got) == 1
    await crashed.dead_letter(got, "HTTP 422", 1)
    await crashed.dead_letter(got, "HTTP 422", 1)  # judged again after the crash
    assert len(await retry_dead(redis, await list_dead(redis))) == 2
    rx = await Receiver().start()
    d = Dispatcher(redis, make_config({"ops": hook(rx.url)}, redis_url), consumer="t1")
    await d.start()
    try:
        await rx.wait_for(1)

        async def settled() -> bool:
            return (await d.health())["ops"]["pending"] == 0

        await eventually(settled, "both copies acked")  # no further send can come after
        assert rx.ids() == [alert(1).id]
    finally:
        await d.stop()
        await rx.stop()


async def test_stop_drains_alerts_not_read_yet(redis: aioredis.Redis, redis_url: str) -> None:
    """SIGTERM's drain covers the whole outbox, not only what the worker had already read."""
    count = 120  # more than one XREADGROUP batch (100)
    rx = await Receiver().start()
    cfg = make_config({"ops": hook(rx.url)}, redis_url)
    d = Dispatcher(redis, cfg, consumer="drain")
    await d.start()
    try:
        # more than one XREADGROUP batch, enqueued in one go right before the stop
        pipe = redis.pipeline(transaction=False)
        for i in range(count):
            pipe.xadd(keys.outbox("SPY"), outbox_fields(alert(i), ["ops"]))
        await pipe.execute()
        await d.stop(drain_timeout=30)
        assert sorted(rx.ids()) == sorted(alert(i).id for i in range(count))
        pending = await redis.xpending(keys.outbox("SPY"), keys.notify_group("ops"))
        assert pending["pending"] == 0
    finally:
        await rx.stop()


async def test_alerts_another_daemon_claimed_while_this_one_was_cut_off_are_not_sent_again(
    redis: aioredis.Redis, redis_url: str
) -> None:
    # d1 holds alert 1 in a backoff (its first send got a 503) and loses Redis (here: its
    # user is switched off) for longer than claim_idle, so its touches stop landing; d2
    # claims the alert and delivers it. When d1 is back it sent the alert again from its
    # buffer at the backoff's end, unchecked: delivered twice
    await redis.execute_command("ACL", "SETUSER", "d1", "on", ">d1-pw", "~*", "&*", "+@all")
    cut_off = aioredis.Redis.from_url(redis_url.replace("redis://", "redis://d1:d1-pw@", 1))

    async def fail_the_first(n: int, _r: web.Request) -> web.Response | None:
        return web.Response(status=503) if n == 1 else None

    rx = await Receiver(responder=fail_the_first).start()
    cfg = make_config(
        {"ops": hook(rx.url, retry_base_s=20, retry_max_s=20)}, redis_url, claim_idle="2s"
    )
    await enqueue(redis, alert(1), ["ops"])
    d1, d2 = Dispatcher(cut_off, cfg, consumer="d1"), Dispatcher(redis, cfg, consumer="d2")
    await d1.start()
    try:
        await rx.wait_for(1, status=503)  # d1 waits 10-20 s to try again
        await redis.execute_command("ACL", "SETUSER", "d1", "off")
        await redis.execute_command("CLIENT", "KILL", "USER", "d1")
        await d2.start()
        await rx.wait_for(1)  # d2 claimed it (idle past claim_idle) and delivered it

        async def recorded() -> bool:
            return (await redis.xpending(keys.outbox("SPY"), keys.notify_group("ops")))[
                "pending"
            ] == 0

        await eventually(recorded, "d2 recorded its delivery")
        await redis.execute_command("ACL", "SETUSER", "d1", "on")
        worker = d1.workers["ops"]
        await eventually(
            lambda: not worker.buffer and worker.inflight is None, "d1 holds nothing any more"
        )
        assert rx.ids() == [alert(1).id]
    finally:
        await redis.execute_command("ACL", "SETUSER", "d1", "on")
        await d2.stop()
        await d1.stop()
        await cut_off.aclose()
        await redis.execute_command("ACL", "DELUSER", "d1")
        await rx.stop()


async def test_an_outbox_key_of_another_type_does_not_stop_the_other_symbols_alerts(
    redis: aioredis.Redis, redis_url: str
) -> None:
    # a watched symbol's outbox key made into something else (by hand, or another program
    # sharing the Redis): commit.lua refuses that symbol's alerts, naming the key; the other
    # symbols' alerts read with it (one XREADGROUP, one autoclaim) must still go out
    rx = await Receiver().start()
    cfg = make_config({"ops": hook(rx.url)}, redis_url, claim_idle="200ms")
    await redis.set(keys.outbox("QQQ"), "not a stream")
    d = Dispatcher(redis, cfg, consumer="t1")
    await d.start()
    try:
        await enqueue(redis, alert(1), ["ops"], poke=[d])
        await enqueue(redis, alert(2, "IWM"), ["ops"])  # found by the sweep
        await rx.wait_for(2)
        assert sorted(rx.ids()) == sorted([alert(1).id, alert(2, "IWM").id])
        assert d.streams.refused == {keys.outbox("QQQ"): "string"}
        # fixed by hand: its alerts are read again
        await redis.delete(keys.outbox("QQQ"))
        await enqueue(redis, alert(3, "QQQ"), ["ops"])
        await rx.wait_for(3)
        assert alert(3, "QQQ").id in rx.ids() and not d.streams.refused
        # made so while running: found at the read that fails
        await redis.delete(keys.outbox("IWM"))
        await redis.set(keys.outbox("IWM"), "not a stream")
        await enqueue(redis, alert(4), ["ops"])
        await rx.wait_for(4)
        assert d.streams.refused == {keys.outbox("IWM"): "string"}
    finally:
        await d.stop()
        await rx.stop()


async def test_a_channel_changed_by_a_reload_while_redis_is_away_delivers_once_it_is_back(
    redis: aioredis.Redis, redis_url: str
) -> None:
    # the reload stops the changed channel and starts it again; starting it created its groups
    # first, which raised while Redis was away: the channel stayed stopped (no worker) for
    # good, the reload half applied, and nothing said so
    await redis.execute_command("ACL", "SETUSER", "d3", "on", ">d3-pw", "~*", "&*", "+@all")
    away = aioredis.Redis.from_url(redis_url.replace("redis://", "redis://d3:d3-pw@", 1))
    rx = await Receiver().start()
    cfg = make_config({"ops": hook(rx.url)}, redis_url)
    d = Dispatcher(away, cfg, consumer="d3")
    await d.start()
    try:
        await redis.execute_command("ACL", "SETUSER", "d3", "off")
        await redis.execute_command("CLIENT", "KILL", "USER", "d3")
        await d.reload(make_config({"ops": hook(rx.url, timeout_s=9)}, redis_url))
        assert "ops" in d.workers
        await redis.execute_command("ACL", "SETUSER", "d3", "on")
        await enqueue(redis, alert(1), ["ops"], poke=[d])
        await rx.wait_for(1)
        assert rx.ids() == [alert(1).id]
    finally:
        await redis.execute_command("ACL", "SETUSER", "d3", "on")
        await d.stop()
        await away.aclose()
        await redis.execute_command("ACL", "DELUSER", "d3")
        await rx.stop()


async def test_a_dead_letter_stream_of_another_type_does_not_stop_the_channel(
    redis: aioredis.Redis, redis_url: str
) -> None:
    # gex:dead made another type by hand: writing a dead letter raised, the entry stayed held
    # and was sent again on every turn (the receiver's 400 twice a second), and nothing else
    # of the channel went out. Now it is left pending in the outbox, named in an error line
    async def refuse_the_first(_n: int, r: web.Request) -> web.Response | None:
        body = await r.json()
        return web.Response(status=400, text="bad") if body["id"] == alert(0).id else None

    rx = await Receiver(responder=refuse_the_first).start()
    await redis.set(keys.DEAD, "not a stream")
    d = Dispatcher(redis, make_config({"ops": hook(rx.url)}, redis_url), consumer="t1")
    await d.start()
    try:
        await enqueue(redis, alert(0), ["ops"], poke=[d])
        await rx.wait_for(1, status=400)
        for i in range(1, 4):
            await enqueue(redis, alert(i), ["ops"], poke=[d])
        await rx.wait_for(3)
        assert sorted(rx.ids()) == sorted(alert(i).id for i in range(1, 4))
        pending = await redis.xpending_range(
            keys.outbox("SPY"), keys.notify_group("ops"), "-", "+", 10
        )
        assert len(pending) == 1  # alert 0, not lost: claimed and tried again after claim_idle
    finally:
        await d.stop()
        await rx.stop()


async def test_a_dead_letter_stream_of_another_type_is_blocked_in_health_until_it_is_a_stream(
    redis: aioredis.Redis, redis_url: str
) -> None:
    # the alert waits in the outbox (above) and only an operator can heal the key: /healthz
    # must say so while it lasts (it was an error line every claim_idle, and /healthz ok)
    rx = await Receiver(responder=_refuse).start()
    await redis.set(keys.DEAD, "not a stream")
    cfg = make_config({"ops": hook(rx.url)}, redis_url, claim_idle="200ms")
    d = Dispatcher(redis, cfg, consumer="t1")
    await d.start()

    try:
        await enqueue(redis, alert(0), ["ops"], poke=[d])
        await eventually(lambda: _is_blocked(d), "the channel blocked on gex:dead")
        want = f"{keys.DEAD} holds another type than a stream: dead letters wait"
        assert await _blocked(d) == [want]
        await redis.delete(keys.DEAD)  # healed: the alert is claimed again and dead-lettered
        await eventually(lambda: _clear(d), "the block cleared by a dead letter written")
        assert [e.alert_id for e in await list_dead(redis)] == [alert(0).id]
    finally:
        await d.stop()
        await rx.stop()


async def test_a_reload_finds_an_outbox_key_of_another_type_soon_after_a_search_found_none(
    redis: aioredis.Redis, redis_url: str
) -> None:
    # a WRONGTYPE no outbox key causes (a key made by hand) makes a channel search the outbox
    # keys, and not again for 10 s once one found none (90ba545); the reload's group creation,
    # whose WRONGTYPE only an outbox key causes, was held to that too: it raised out of the
    # reload, and the channel the reload had stopped stayed without a worker
    old, new = await Receiver().start(), await Receiver().start()
    d = Dispatcher(redis, make_config({"ops": hook(old.url)}, redis_url), consumer="t1")
    await d.start()
    try:
        await refuse_wrong_types(redis, d.streams)  # a channel's search: none found
        await redis.delete(keys.outbox("QQQ"))
        await redis.set(keys.outbox("QQQ"), "not a stream")
        await d.reload(make_config({"ops": hook(new.url)}, redis_url))
        assert d.streams.refused == {keys.outbox("QQQ"): "string"}
        await enqueue(redis, alert(1), ["ops"], poke=[d])
        await new.wait_for(1)
        assert new.ids() == [alert(1).id]
    finally:
        await d.stop()
        await old.stop()
        await new.stop()


async def test_an_attempts_key_of_another_type_leaves_the_alert_pending_not_a_hot_loop(
    redis: aioredis.Redis, redis_url: str
) -> None:
    # an alert's attempts key (keys.attempts) made another type by hand: counting a failed send
    # raised WRONGTYPE out of the flush, and the loop sent the same message again every 0.5 s
    # (a warning each time), every later alert of the channel stuck behind it. Now it is left
    # pending (claimed and tried again after claim_idle), named in one error line per attempt,
    # and the channel says so in /healthz, as for gex:dead of another type
    from structlog.testing import capture_logs

    async def fail_the_first(_n: int, r: web.Request) -> web.Response | None:
        body = await r.json()
        return web.Response(status=500, text="down") if body["id"] == alert(0).id else None

    rx = await Receiver(responder=fail_the_first).start()
    bad = keys.attempts("SPY", alert(0).id, "ops")
    await redis.set(bad, "not a hash")
    d = Dispatcher(redis, make_config({"ops": hook(rx.url)}, redis_url), consumer="t1")

    with capture_logs() as logs:
        await d.start()
        try:
            await enqueue(redis, alert(0), ["ops"], poke=[d])
            await rx.wait_for(1, status=500)
            for i in range(1, 4):
                await enqueue(redis, alert(i), ["ops"], poke=[d])
            await rx.wait_for(3)
            assert sorted(rx.ids()) == sorted(alert(i).id for i in range(1, 4))
            assert await _blocked(d) == [f"{bad} holds another type than a hash: retries wait"]
            pending = await redis.xpending_range(
                keys.outbox("SPY"), keys.notify_group("ops"), "-", "+", 10
            )
            assert len(pending) == 1  # alert 0, not lost
            assert await redis.get(bad) == b"not a hash"  # an operator's key is left alone
        finally:
            await d.stop()
            await rx.stop()
    tries = len(rx.ids(status=500))
    named = [e for e in logs if e.get("key") == bad and e["log_level"] == "error"]
    assert len(named) == tries  # one error line per attempt, no loop of warnings
    assert not [e for e in logs if e.get("event") == "outbox unavailable"]


async def test_an_attempts_key_of_another_type_is_blocked_in_health_until_it_is_removed(
    redis: aioredis.Redis, redis_url: str
) -> None:
    # the alert is tried again on the claim_idle cadence; once the operator removes the key,
    # its attempts are counted again: dead-lettered after its 400, and the block cleared
    rx = await Receiver(responder=_refuse).start()
    bad = keys.attempts("SPY", alert(0).id, "ops")
    await redis.rpush(bad, "not a hash")
    cfg = make_config({"ops": hook(rx.url)}, redis_url, claim_idle="200ms")
    d = Dispatcher(redis, cfg, consumer="t1")
    await d.start()

    try:
        await enqueue(redis, alert(0), ["ops"], poke=[d])
        await eventually(lambda: _is_blocked(d), "the channel blocked on the attempts key")
        assert await _blocked(d) == [f"{bad} holds another type than a hash: retries wait"]
        await rx.wait_for(2, status=400)  # tried again after claim_idle, still blocked
        assert await _blocked(d) == [f"{bad} holds another type than a hash: retries wait"]
        await redis.delete(bad)
        await eventually(lambda: _clear(d), "the block cleared by an attempt counted")
        await eventually(lambda: d.workers["ops"].dead == 1, "alert 0 dead-lettered")
        assert [e.alert_id for e in await list_dead(redis)] == [alert(0).id]
        assert set(rx.ids(status=400)) == {alert(0).id}
    finally:
        await d.stop()
        await rx.stop()


async def test_a_reload_and_a_stop_at_once_stop_a_changed_channel_once_and_start_nothing_after(
    redis: aioredis.Redis, redis_url: str
) -> None:
    # `systemctl reload` then `stop` with a delivery in flight: the reload's stop of the changed
    # channel and the daemon's stop both waited for its worker, and the second to resume found
    # it gone (KeyError: exit status 1, the rest of the stop skipped); the reload then started
    # the channel again behind the stop. The daemon cancels a reload at its stop, but a cancel
    # that redis-py swallows (daemon/stopping.py) leaves it running: the dispatcher must cope
    release = asyncio.Event()

    async def hold(_n: int, _r: web.Request) -> web.Response | None:
        await release.wait()
        return None

    rx = await Receiver(responder=hold).start()
    d = Dispatcher(redis, make_config({"ops": hook(rx.url)}, redis_url), consumer="t1")
    await d.start()
    try:
        await enqueue(redis, alert(0), ["ops"], poke=[d])
        await eventually(lambda: len(rx.hits) == 1, "a delivery in flight")
        changed = make_config({"ops": hook(rx.url, timeout_s=9)}, redis_url)
        reload = asyncio.create_task(d.reload(changed))
        stop = asyncio.create_task(d.stop(drain_timeout=30))
        await eventually(lambda: d.workers["ops"].stopping.is_set(), "the channel asked to stop")
        await eventually(lambda: d._stats_task is None, "the stop at its channels")
        release.set()
        await asyncio.gather(reload, stop)
        assert d.workers == {} and d.tasks == {}
        assert rx.ids() == [alert(0).id]
    finally:
        release.set()
        await d.stop()
        await rx.stop()
