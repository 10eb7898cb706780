"""The per-stream reads of many outboxes (XAUTOCLAIM, the backlog figures) go out a bounded
number of streams per round trip, and still cover every stream to its end."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from gex_alertd import keys
from gex_alertd.connections import entries
from gex_alertd.notify import outbox as outbox_mod
from gex_alertd.notify.outbox import Outbox, group_stats
from tests.notify.support import alert, enqueue

SYMBOLS = ["SPY", "QQQ", "IWM", "DIA", "XLE"]


async def _held_by_a_dead_consumer(redis: aioredis.Redis) -> list[str]:
    """Alerts on 5 outboxes (3 on IWM), every one read by a consumer that then went away."""
    ids = []
    for s in SYMBOLS:
        for i in range(3 if s == "IWM" else 1):
            ids.append(await enqueue(redis, alert(i, s), ["ops"]))
    dead = Outbox(redis, "ops", "dead-host", 3600)
    assert len(await dead.read_new([keys.outbox(s) for s in SYMBOLS], 10)) == len(ids)
    return ids


@pytest.mark.parametrize("cluster", [False, True], ids=["one-node-script", "per-stream"])
async def test_autoclaim_takes_every_idle_entry_a_few_streams_per_round_trip(
    redis: aioredis.Redis, monkeypatch, cluster: bool
) -> None:
    # 2 streams per round trip, 1 entry per XAUTOCLAIM: 3 trips, IWM followed by its cursor.
    # One node: one script call per 2 streams (autoclaim.lua); a cluster (forced here on one
    # node, its commands work the same): one pipelined XAUTOCLAIM per stream
    monkeypatch.setattr(outbox_mod, "STREAMS_PER_TRIP", 2)
    ids = await _held_by_a_dead_consumer(redis)
    live = Outbox(redis, "ops", "live-host", 3600)
    live.cluster = cluster
    sent: list[int] = []  # streams per round trip
    replies: list[int] = []  # streams answering per script call
    real_execute, real_claim = aioredis.client.Pipeline.execute, live._claim

    async def counting_execute(self, *args, **kwargs):
        sent.append(len(self.command_stack))
        return await real_execute(self, *args, **kwargs)

    async def counting_claim(*, keys, args):
        sent.append(len(keys))
        reply = await real_claim(keys=keys, args=args)
        replies.append(len(reply))
        return reply

    monkeypatch.setattr(aioredis.client.Pipeline, "execute", counting_execute)
    live._claim = counting_claim  # type: ignore[assignment]
    claimed = await live.autoclaim([keys.outbox(s) for s in SYMBOLS], 0.0, count=1)
    assert sorted(e.entry_id for e in claimed) == sorted(ids)
    assert sent and max(sent) == 2  # never more than STREAMS_PER_TRIP streams at once
    pending = await redis.xpending(keys.outbox("IWM"), keys.notify_group("ops"))
    assert pending["pending"] == 3
    assert {as_consumer(c["name"]) for c in pending["consumers"]} == {"live-host"}
    replies.clear()
    # nothing idle that long: nothing claimed, and no stream answers the script
    assert await live.autoclaim([keys.outbox(s) for s in SYMBOLS], 3600.0) == []
    assert set(replies) <= {0}
    assert bool(replies) is not cluster


async def test_backlog_figures_count_every_stream_a_few_per_round_trip(
    redis: aioredis.Redis, monkeypatch
) -> None:
    monkeypatch.setattr(outbox_mod, "STREAMS_PER_TRIP", 2)
    ids = await _held_by_a_dead_consumer(redis)
    await enqueue(redis, alert(9, "XLE"), ["ops"])  # one more, not read by anyone yet
    pending, _age = await group_stats(redis, "ops", [keys.outbox(s) for s in SYMBOLS])
    assert pending == len(ids) + 1


async def test_on_one_node_the_backlog_is_one_script_call_per_few_streams_and_the_same(
    redis: aioredis.Redis, monkeypatch
) -> None:
    # pending entries (read by a consumer gone), unread ones behind them, a stream never read,
    # one without the group, a missing key and a key that is no stream: one script call per 2
    # streams (backlog.lua), no pipeline, and what the per-stream commands of a cluster count
    monkeypatch.setattr(outbox_mod, "STREAMS_PER_TRIP", 2)
    ids = await _held_by_a_dead_consumer(redis)
    await enqueue(redis, alert(9, "XLE"), ["ops"])
    await enqueue(redis, alert(8, "TLT"), ["ops"])
    await redis.xadd(keys.outbox("GLD"), {"x": "1"})  # no group on it
    await redis.set(keys.outbox("BAD"), "not a stream")
    streams = [keys.outbox(s) for s in [*SYMBOLS, "TLT", "GLD", "BAD", "NONE"]]
    sent: list[int] = []
    real_execute = aioredis.client.Pipeline.execute

    async def counting_execute(self, *args, **kwargs):
        sent.append(len(self.command_stack))
        return await real_execute(self, *args, **kwargs)

    monkeypatch.setattr(aioredis.client.Pipeline, "execute", counting_execute)
    group = keys.notify_group("ops")
    await redis.config_resetstat()
    scripted = await outbox_mod.backlog(redis, group, streams, cluster=False)
    calls = (await redis.info("commandstats"))["cmdstat_evalsha"]["calls"]
    assert sent == [] and calls == 5  # 9 streams, 2 a call
    per_stream = await outbox_mod.backlog(redis, group, streams, cluster=True)
    assert sent  # the cluster's path pipelines per stream
    oldest = min(outbox_mod.id_ms(i) for i in ids)
    assert scripted == per_stream == (len(ids) + 2, oldest)
    # all read and acknowledged: nothing left, no oldest
    live = Outbox(redis, "ops", "live-host", 3600)
    got = await live.autoclaim(streams[:5], 0.0) + await live.read_new(streams[:6], 10)
    for s in streams:
        mine = [e.entry_id for e in got if e.stream == s]
        if mine:
            await redis.xack(s, group, *mine)
    assert await outbox_mod.backlog(redis, group, streams, cluster=False) == (0, None)
    assert await outbox_mod.backlog(redis, group, streams, cluster=True) == (0, None)


def as_consumer(name: object) -> str:
    return name.decode() if isinstance(name, bytes) else str(name)


@pytest.mark.parametrize("cluster", [False, True], ids=["one-node-script", "per-stream"])
async def test_autoclaim_drops_deleted_entries_and_vanished_streams_and_claims_the_rest(
    redis: aioredis.Redis, monkeypatch, cluster: bool
) -> None:
    # entries deleted from their stream while pending (XDEL, a trim) come back from XAUTOCLAIM
    # as deleted ids (Redis 7): they leave the PEL, are never delivered, and the sweep goes on
    # past them to the entries after; a stream deleted whole (with its group) is no error
    monkeypatch.setattr(outbox_mod, "STREAMS_PER_TRIP", 2)
    await _held_by_a_dead_consumer(redis)
    streams = [keys.outbox(s) for s in SYMBOLS]
    held = {(s, as_consumer(e[0])) for s in streams for e in entries(await redis.xrange(s))}
    iwm, dia = keys.outbox("IWM"), keys.outbox("DIA")
    iwm_ids = [as_consumer(e[0]) for e in entries(await redis.xrange(iwm))]
    await redis.xdel(iwm, iwm_ids[0], iwm_ids[1])
    await redis.delete(dia)
    want = {(s, i) for s, i in held if s != dia and (s != iwm or i == iwm_ids[2])}
    live = Outbox(redis, "ops", "live-host", 3600)
    live.cluster = cluster
    claimed = await live.autoclaim(streams, 0.0, count=1)
    assert sorted((e.stream, e.entry_id) for e in claimed) == sorted(want)
    assert all(e.event is not None and e.problem is None for e in claimed)
    pending = await redis.xpending(iwm, keys.notify_group("ops"))
    assert pending["pending"] == 1
    assert {as_consumer(c["name"]) for c in pending["consumers"]} == {"live-host"}
    # a second sweep by another consumer takes the same live entries, none of the deleted
    other = Outbox(redis, "ops", "other-host", 3600)
    other.cluster = cluster
    again = await other.autoclaim(streams, 0.0, count=1)
    assert sorted((e.stream, e.entry_id) for e in again) == sorted(want)


async def test_the_one_node_read_packs_its_commands_and_reads_what_the_cluster_path_reads(
    redis: aioredis.Redis, monkeypatch, exchanges: list[int]
) -> None:
    # 2 streams per XREADGROUP, all of them in one write (packed.exchange); a stream that has
    # never had the group (NOGROUP: it gets one, then is read) and entries deleted while
    # pending (nil fields: "entry deleted from the stream") come out as on a cluster's path
    monkeypatch.setattr(outbox_mod, "KEYS_PER_READ", 2)
    for s in SYMBOLS:
        for i in range(2 if s == "IWM" else 1):
            await enqueue(redis, alert(i, s), ["ops", "mirror"])
    bare = keys.outbox("TLT")  # no group on it yet
    await redis.xadd(bare, {"x": "1"})
    streams = [keys.outbox(s) for s in SYMBOLS] + [bare]
    await enqueue(redis, alert(5, "QQQ"), ["ops", "mirror"])
    exchanges.clear()
    # the same reads by two channels' consumers (one per path), after the same deletion
    one_node = Outbox(redis, "ops", "one-node", 3600)
    cluster = Outbox(redis, "mirror", "cluster", 3600)
    cluster.cluster = True
    new = [await ob.read_new(streams, 10) for ob in (one_node, cluster)]
    iwm = keys.outbox("IWM")
    await redis.xdel(iwm, next(e.entry_id for e in new[0] if e.stream == iwm))
    own = [await ob.read_own_pending(streams) for ob in (one_node, cluster)]

    def seen(got: list) -> list:
        return [(e.stream, e.entry_id, e.alert_id, e.problem, e.event) for e in got]

    assert seen(new[0]) == seen(new[1])
    assert len(new[0]) == 6 + 1  # every alert, and TLT's entry (no event in it)
    assert seen(own[0]) == seen(own[1])
    assert next(e.problem for e in own[0] if e.stream == iwm) == "entry deleted from the stream"
    # one node: 3 commands of 2 streams in one exchange, and TLT read again after its group
    assert exchanges[:2] == [3, 1]


async def test_a_sweep_over_the_same_streams_reuses_its_packed_commands(
    redis: aioredis.Redis, monkeypatch
) -> None:
    # 12 streams per command (one command here), a read of 3 streams or more counts as a
    # sweep: a poke's read of fewer is packed each time and does not take the sweep's place
    monkeypatch.setattr(outbox_mod, "KEYS_PER_READ", 12)
    streams = [keys.outbox(s) for s in SYMBOLS]
    for s in SYMBOLS:
        await enqueue(redis, alert(0, s), ["ops"])
    ob = Outbox(redis, "ops", "sweeper", 3600)
    packs: list[int] = []
    real = outbox_mod.packed.pack

    def counting(*args):
        packs.append(1)
        return real(*args)

    monkeypatch.setattr(outbox_mod.packed, "pack", counting)
    assert len(await ob.read_new(streams, 1)) == 5
    assert len(packs) == 1
    await enqueue(redis, alert(1, "DIA"), ["ops"])
    assert await ob.read_new(streams[:2], 1) == []  # a poke's read: packed, not kept
    assert len(packs) == 2
    got = await ob.read_new(streams, 1)  # the same sweep: packed before, sent as it was
    assert [(e.stream, e.alert_id) for e in got] == [(keys.outbox("DIA"), alert(1, "DIA").id)]
    assert len(packs) == 2
    await ob.read_new(streams, 2)  # another count: packed anew
    await ob.read_new(streams[:4], 2)  # other streams: packed anew
    assert len(packs) == 4


async def test_on_one_node_the_per_alert_commands_go_in_one_write_and_do_what_they_did(
    redis: aioredis.Redis, exchanges: list[int]
) -> None:
    # sent markers checked, entries of two streams marked sent and acked (outbox.lua, loaded
    # again after a SCRIPT FLUSH), others acked: one write each, the same keys as the
    # per-stream calls of a cluster write
    for s in ("SPY", "QQQ"):
        for i in range(2):
            await enqueue(redis, alert(i, s), ["ops"])
    ob = Outbox(redis, "ops", "one", 3600)
    got = await ob.read_new([keys.outbox("SPY"), keys.outbox("QQQ")], 10)
    by_stream = [[e for e in got if e.stream == keys.outbox(s)] for s in ("SPY", "QQQ")]
    first, rest = [es[0] for es in by_stream], [es[1] for es in by_stream]  # one of each
    assert await ob.sent_already(got) == [False] * 4
    await redis.script_flush()
    exchanges.clear()
    await ob.mark_sent(first)
    assert exchanges == [2, 2]  # NOSCRIPT: loaded, then both streams' calls again
    assert await ob.sent_already(first + rest) == [True, True, False, False]
    await ob.ack(rest)
    for s in ("SPY", "QQQ"):
        pending = await redis.xpending(keys.outbox(s), keys.notify_group("ops"))
        assert pending["pending"] == 0
        for e in first:
            marker = keys.sent_marker(e.slot_symbol, e.alert_id, "ops")
            assert 0 < await redis.pttl(marker) <= 3600 * 1000
    assert ob.acked_streams == {keys.outbox("SPY"), keys.outbox("QQQ")}


@pytest.mark.parametrize("how", ["mark_sent", "ack"])
@pytest.mark.parametrize("cluster", [False, True], ids=["one-write", "per-stream"])
async def test_a_finish_that_fails_part_way_still_leaves_its_acked_streams_to_the_trim(
    redis: aioredis.Redis, cluster: bool, how: str
) -> None:
    # SPY's call acks, QQQ's fails (its stream replaced by a string: WRONGTYPE): the write
    # raises, and SPY, acked, is still among the streams the next trim looks at (the
    # dispatcher's trim reads acked_streams)
    for s in ("SPY", "QQQ"):
        await enqueue(redis, alert(0, s), ["ops"])
    ob = Outbox(redis, "ops", "one", 3600)
    ob.cluster = cluster
    got = await ob.read_new([keys.outbox("SPY"), keys.outbox("QQQ")], 10)
    got.sort(key=lambda e: e.stream != keys.outbox("SPY"))  # SPY's call goes first
    await redis.delete(keys.outbox("QQQ"))
    await redis.set(keys.outbox("QQQ"), "not a stream")
    with pytest.raises(aioredis.ResponseError, match="WRONGTYPE"):
        await getattr(ob, how)(got)
    pending = await redis.xpending(keys.outbox("SPY"), keys.notify_group("ops"))
    assert pending["pending"] == 0
    assert keys.outbox("SPY") in ob.acked_streams
