from __future__ import annotations

import asyncio
import random
import weakref

import msgspec
import numpy as np
import pytest
import redis.asyncio as aioredis
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.exceptions import ResponseError
from redis.typing import EncodableT, FieldT

from gex_alertd import keys, store
from gex_alertd.commit import (
    PREV_ROWS_BYTES,
    Committer,
    PrevCache,
    StoredState,
    build_args,
    decode_state,
)
from gex_alertd.config import RedisConfig
from gex_alertd.connections import entries, hash_fields
from gex_alertd.model import decode_alert, decode_flow_gex, rowless
from gex_alertd.ops import metrics
from gex_alertd.rules.columns import FIELDS, StrikeColumns, columns
from tests.rules.factory import chain, row, snap
from tests.rules.helpers import make_rule
from tests.support.upstream import flow_gex_body

CFG = RedisConfig(url="redis://unused", retention=None)


def flip_rule(**kw):
    return make_rule(type="flip_cross", name="spy-flip", channels=["desk", "ops"], **kw)


def below(at: int, **kw):
    return snap(at=at, spot=99.0, flip=100.0, **kw)


def above(at: int, **kw):
    return snap(at=at, spot=101.0, flip=100.0, **kw)


async def outbox(redis: aioredis.Redis) -> list[dict[bytes, bytes]]:
    return [fields for _id, fields in entries(await redis.xrange(keys.outbox("SPY")))]


async def test_first_snapshot_stores_and_a_cross_fires_once(redis: aioredis.Redis) -> None:
    c = Committer(redis, [flip_rule()], CFG)
    r0 = await c.commit(below(0), None)
    assert r0.stored and r0.alerts == []
    r1 = await c.commit(above(1), None)
    assert r1.stored and len(r1.alerts) == 1
    [entry] = await outbox(redis)
    event = decode_alert(entry[b"event"])
    assert event == r1.alerts[0]
    assert entry[b"id"] == event.id.encode() and entry[b"channels"] == b'["desk","ops"]'
    assert entry[b"symbol"] == b"SPY"
    ids = [i for i, _ in entries(await redis.xrange(keys.snap("SPY")))]
    assert ids == [f"{below(0).as_of_ms}-0".encode(), f"{above(1).as_of_ms}-0".encode()]
    assert [s async for s in store.read_range(redis, "SPY")] == [below(0), above(1)]
    state = await redis.hgetall(keys.state("SPY"))
    assert state[b"_v"] == b"2" and state[b"_last"] == str(above(1).as_of_ms).encode()
    assert await redis.exists(f"gex:{{SPY}}:alert:{event.id}")


async def test_repeat_and_older_snapshots_are_noops(redis: aioredis.Redis) -> None:
    c = Committer(redis, [flip_rule()], CFG)
    await c.commit(below(0), None)
    await c.commit(above(2), None)
    before = await redis.hgetall(keys.state("SPY"))
    for s in (above(2), below(2), below(1), above(1)):
        r = await c.commit(s, None)
        assert not r.stored and r.alerts == []
    assert await redis.hgetall(keys.state("SPY")) == before
    assert await redis.xlen(keys.snap("SPY")) == 2
    assert len(await outbox(redis)) == 1


async def test_the_kept_state_is_what_the_hash_holds_in_a_fraction_of_the_memory(
    redis: aioredis.Redis,
) -> None:
    rules = [flip_rule(), oi_rule(), make_rule(type="net_gex_sign", name="sign", channels=["d"])]
    c = Committer(redis, rules, CFG, kept_raw_max=0)  # past kept_raw_max streams: encoded
    for s in oi_snaps(4):
        await c.commit(s, None)
    kept = c._state[("SPY", None)]
    # the next commit evaluates against exactly what Redis holds, without reading it
    assert c._thaw(kept) == decode_state(
        c.engine, hash_fields(await redis.hgetall(keys.state("SPY")))
    )
    assert isinstance(kept, bytes) and len(kept) < 300  # ~1.2 KB as objects (3-4 rules)


async def test_the_kept_state_holds_rules_of_one_type_and_rules_of_other_symbols(
    redis: aioredis.Redis,
) -> None:
    # encoded, a kept state is one slot per rule of the engine in order: two rules of one type
    # keep their own slots, a rule of another symbol none
    rules = [
        flip_rule(),
        make_rule(type="flip_cross", name="wide-flip", band_pct=1.0, channels=["d"]),
        make_rule(type="net_gex_sign", name="qqq-sign", symbols=["QQQ"], channels=["d"]),
    ]
    c = Committer(redis, rules, CFG, kept_raw_max=0)
    for at, s in enumerate((below(1), above(2), below(3))):
        await c.commit(s, None)
        kept = c._state[("SPY", None)]
        assert isinstance(kept, bytes)
        thawed = c._thaw(kept)
        assert set(thawed.slots) == {"spy-flip", "wide-flip"} and thawed.last_ms is not None
        assert thawed == decode_state(c.engine, hash_fields(await redis.hgetall(keys.state("SPY"))))
        assert c._freeze(thawed) == kept, at


async def test_a_short_watchlist_keeps_its_rule_state_as_objects(redis: aioredis.Redis) -> None:
    rules = [flip_rule(), oi_rule(), make_rule(type="net_gex_sign", name="sign", channels=["d"])]
    symbols = ("SPY", "QQQ", "IWM")
    fired: dict[int, list[tuple[str, str, str]]] = {}
    for raw_max in (3, 2):  # 3 streams: as many as kept_raw_max, then one more
        await redis.flushall()
        c = Committer(redis, rules, CFG, kept_raw_max=raw_max)
        fired[raw_max] = []
        for s in oi_snaps(4):
            for sym in symbols:
                r = await c.commit(msgspec.structs.replace(s, symbol=sym), None)
                fired[raw_max] += [(sym, e.rule, e.as_of) for e in r.alerts]
        for sym in symbols:
            kept = c._state[(sym, None)]
            # objects for a watchlist of up to kept_raw_max streams, encoded past that
            assert isinstance(kept, StoredState if raw_max == 3 else bytes)
            # either way the next commit evaluates against exactly what Redis holds
            assert c._thaw(kept) == decode_state(
                c.engine, hash_fields(await redis.hgetall(keys.state(sym)))
            )
    assert fired[3] and fired[3] == fired[2]


async def test_a_streams_first_state_is_kept_encoded_and_a_long_watchlist_keeps_no_objects(
    redis: aioredis.Redis,
) -> None:
    """The first cycle of a watchlist cannot know how many streams are to come: each stream's
    first state is kept encoded, and as objects from its next commit on only while at most
    kept_raw_max streams are kept. A watchlist longer than that never holds objects, not even in
    its first cycle (5,000 streams of ~0.9 KB slot objects would be its RSS budget's margin)."""
    rules = [flip_rule(), oi_rule()]
    symbols = ("SPY", "QQQ", "IWM")
    snaps = oi_snaps(3)
    for raw_max, kinds in ((3, [bytes, StoredState, StoredState]), (2, [bytes, bytes, bytes])):
        await redis.flushall()
        c = Committer(redis, rules, CFG, kept_raw_max=raw_max)
        for s, kind in zip(snaps, kinds, strict=True):
            for sym in symbols:
                assert (await c.commit(msgspec.structs.replace(s, symbol=sym), None)).stored
            for sym in symbols:
                assert isinstance(c._state[(sym, None)], kind), (raw_max, s.as_of, sym)
                assert c._thaw(c._state[(sym, None)]) == decode_state(
                    c.engine, hash_fields(await redis.hgetall(keys.state(sym)))
                )


async def test_restart_reads_state_from_redis(redis: aioredis.Redis) -> None:
    await Committer(redis, [flip_rule()], CFG).commit(below(0), None)
    # the daemon was down while spot crossed; a new process sees it once
    c2 = Committer(redis, [flip_rule()], CFG)
    r = await c2.commit(above(40), None)
    assert len(r.alerts) == 1
    assert (await c2.commit(above(40), None)).stored is False
    c3 = Committer(redis, [flip_rule()], CFG)
    assert (await c3.commit(above(41), None)).alerts == []
    assert len(await outbox(redis)) == 1


async def test_expiry_filter_has_its_own_stream_and_state(redis: aioredis.Redis) -> None:
    c = Committer(redis, [flip_rule()], CFG)
    e = "2026-05-15"
    await c.commit(below(0, expiry=e), e)
    await c.commit(above(0), None)  # the aggregated chain: a separate stream and state
    r = await c.commit(above(1, expiry=e), e)
    assert len(r.alerts) == 1 and r.alerts[0].expiry == e
    assert await redis.xlen(keys.snap("SPY", e)) == 2
    assert await redis.xlen(keys.snap("SPY")) == 1
    assert await redis.exists(keys.state("SPY", e), keys.state("SPY")) == 2


async def test_stale_version_is_a_conflict_and_writes_nothing(redis: aioredis.Redis) -> None:
    c = Committer(redis, [flip_rule()], CFG)
    await c.commit(below(0), None)
    state = decode_state(c.engine, hash_fields(await redis.hgetall(keys.state("SPY"))))
    outcome = c.engine.evaluate(state.slots, above(1), None, None)
    names, args = build_args(c.engine, above(1), None, "41", outcome, CFG)
    reply = await c._batcher.call(names, args)
    assert reply[0] == b"conflict"
    assert await redis.xlen(keys.snap("SPY")) == 1 and await outbox(redis) == []


async def test_two_instances_commit_each_alert_once(redis: aioredis.Redis, redis_url: str) -> None:
    other = aioredis.Redis.from_url(redis_url)
    try:
        a, b = Committer(redis, [flip_rule()], CFG), Committer(other, [flip_rule()], CFG)
        total = []
        for i in range(12):
            s = above(i) if i % 2 else below(i)
            ra, rb = await asyncio.gather(a.commit(s, None), b.commit(s, None))
            assert ra.stored != rb.stored  # exactly one of them stored it
            total += ra.alerts + rb.alerts
        assert len(total) == 11 and len({e.id for e in total}) == 11
        assert len(await outbox(redis)) == 11
    finally:
        await other.aclose()


async def test_interleaved_writers_retry_on_conflict(redis: aioredis.Redis, redis_url: str) -> None:
    # two daemons with different snapshots racing: each reads, then the other commits first
    other = aioredis.Redis.from_url(redis_url)
    try:
        a, b = Committer(redis, [flip_rule()], CFG), Committer(other, [flip_rule()], CFG)
        await a.commit(below(0), None)
        results = await asyncio.gather(*(x.commit(above(i), None) for i, x in ((1, a), (2, b))))
        assert sum(len(r.alerts) for r in results) == 1  # one cross, whoever saw it first
        assert await redis.xlen(keys.snap("SPY")) == 3
    finally:
        await other.aclose()


async def test_refused_stream_id_writes_nothing(redis: aioredis.Redis) -> None:
    # the stream was emptied but remembers a newer last ID: Redis refuses, and so do we
    key = keys.snap("SPY")
    await redis.xadd(key, {"x": "1"}, id=f"{above(100).as_of_ms}-0")
    await redis.xtrim(key, maxlen=0)
    r = await Committer(redis, [flip_rule()], CFG).commit(below(0), None)
    assert not r.stored
    assert not await redis.exists(keys.state("SPY"))


async def test_an_outbox_key_of_another_type_refuses_the_commit_before_any_write(
    redis: aioredis.Redis,
) -> None:
    # the outbox is written last: a foreign key there once failed the script after the snapshot
    # and the state were written, and the alert they implied was lost
    c = Committer(redis, [flip_rule()], CFG)
    await c.commit(below(0), None)
    state = await redis.hgetall(keys.state("SPY"))
    await redis.set(keys.outbox("SPY"), "not a stream")
    with pytest.raises(ResponseError, match=r"WRONGTYPE .* holds a string"):
        await c.commit(above(1), None)
    assert await redis.xlen(keys.snap("SPY")) == 1
    assert await redis.hgetall(keys.state("SPY")) == state
    assert not await redis.keys("gex:{SPY}:alert:*")
    # once the key is fixed, the same snapshot commits and its alert is enqueued
    await redis.delete(keys.outbox("SPY"))
    r = await Committer(redis, [flip_rule()], CFG).commit(above(1), None)
    assert r.stored and len(r.alerts) == 1 and len(await outbox(redis)) == 1


async def test_oi_change_poll_reads_the_previous_snapshot_from_redis(redis: aioredis.Redis) -> None:
    rule = make_rule(type="oi_change", name="oi", min_contracts=500)
    rows = [row(500.0, 1000.0, 1000.0), row(505.0, 1000.0, 1000.0)]
    jumped = [row(500.0, 1000.0, 1000.0), row(505.0, 3000.0, 1000.0)]
    c1 = Committer(redis, [rule], CFG)
    await c1.commit(snap(at=0, strikes=rows), None)
    await c1.commit(snap(at=1, strikes=rows), None)
    c2 = Committer(redis, [rule], CFG)  # a restart: nothing in memory
    r = await c2.commit(snap(at=2, strikes=jumped), None)
    [ev] = r.alerts
    assert ev.details["strikes"] == [
        {
            "strike": 505.0,
            "side": "call",
            "before": 1000.0,
            "after": 3000.0,
            "change": 2000.0,
            "change_pct": 200.0,
        }
    ]
    # the in-memory copy is used next, and only while it is still the stream top
    r = await c2.commit(snap(at=3, strikes=rows), None)
    assert len(r.alerts) == 1 and r.alerts[0].details["strikes"][0]["after"] == 1000.0


async def test_wiped_state_never_enqueues_an_alert_twice(redis: aioredis.Redis) -> None:
    c = Committer(redis, [flip_rule()], CFG)
    await c.commit(below(0), None)
    [ev] = (await c.commit(above(1), None)).alerts
    await redis.delete(keys.state("SPY"), keys.snap("SPY"))
    c2 = Committer(redis, [flip_rule()], CFG)
    await c2.commit(below(0), None)
    r = await c2.commit(above(1), None)
    assert r.stored and r.alerts == []
    assert [decode_alert(e[b"event"]).id for e in await outbox(redis)] == [ev.id]


async def test_cooldown_key_is_set(redis: aioredis.Redis) -> None:
    c = Committer(redis, [flip_rule(cooldown="10m")], CFG)
    await c.commit(below(0), None)
    [ev] = (await c.commit(above(1), None)).alerts
    key = "gex:{SPY}:cooldown:spy-flip"
    assert await redis.get(key) == ev.id.encode()
    assert 0 < await redis.pttl(key) <= 600_000


async def test_trimming_applies(redis: aioredis.Redis) -> None:
    cfg = RedisConfig(url="redis://unused", max_len=1)
    c = Committer(redis, [], cfg)
    for i in range(300):
        await c.commit(snap(at=i), None)
    assert await redis.xlen(keys.snap("SPY")) < 300


async def test_metrics_are_counted(redis: aioredis.Redis) -> None:
    def value(name: str, labels: dict[str, str]) -> float:
        return metrics.REGISTRY.get_sample_value(name, labels) or 0.0

    stored0 = value("gexalertd_snapshots_stored_total", {})
    fired0 = value("gexalertd_alerts_fired_total", {"rule": "spy-flip"})
    lat0 = value("gexalertd_commit_latency_seconds_count", {})
    c = Committer(redis, [flip_rule()], CFG)
    await c.commit(below(0, symbol="QQQ"), None)
    await c.commit(above(1, symbol="QQQ"), None)
    assert value("gexalertd_snapshots_stored_total", {}) == stored0 + 2
    assert value("gexalertd_alerts_fired_total", {"rule": "spy-flip"}) == fired0 + 1
    assert value("gexalertd_commit_latency_seconds_count", {}) == lat0 + 2


async def test_full_chain_round_trips_through_the_commit(redis: aioredis.Redis) -> None:
    s = snap(at=0, strikes=chain(500.0))
    await Committer(redis, [], CFG).commit(s, None)
    assert await store.latest(redis, "SPY") == s
    assert msgspec.json.encode(await store.latest(redis, "SPY")) == msgspec.json.encode(s)


async def test_cached_state_yields_to_another_writer(redis: aioredis.Redis) -> None:
    a = Committer(redis, [flip_rule()], CFG)
    b = Committer(redis, [flip_rule()], CFG)
    await a.commit(below(0), None)  # a now holds the state in memory (version 1)
    assert len((await b.commit(above(1), None)).alerts) == 1  # b crosses (version 2)
    # a's cached state says "below": the version check refuses it, a re-reads and sees "above"
    r = await a.commit(above(2), None)
    assert r.stored and r.alerts == []
    assert await redis.xlen(keys.outbox("SPY")) == 1
    assert (await redis.hget(keys.state("SPY"), "_v")) == b"3"


def oi_rule():
    return make_rule(
        type="oi_change", name="oi", basis="poll", min_contracts=5000, channels=["desk"]
    )


def oi_snaps(n: int = 6):
    """A 200-strike chain whose OI moves a lot between snapshots, some values null."""
    import random

    rng = random.Random(7)
    out = []
    for at in range(n):
        rows = chain(500.0, rng=rng)
        rows[3] = msgspec.structs.replace(rows[3], call_oi=None)  # a null survives the cache
        out.append(snap(at=at, strikes=rows))
    return out


async def test_previous_snapshot_cache_is_compact_and_gives_the_same_alerts(
    redis: aioredis.Redis,
) -> None:
    from gex_alertd.rules.columns import columns

    cached = Committer(redis, [oi_rule()], CFG)
    assert cached._prev._rows.tolist() == [0, 1, 2]  # oi_change reads strike, call and put OI
    cached._prev = PrevCache(
        max_raw=0, max_rows_bytes=0, fields=cached.engine.prev_columns
    )  # every view packed
    fired_cached = []
    for s in oi_snaps():
        fired_cached += [e.id for e in (await cached.commit(s, None)).alerts]
    assert fired_cached  # the chains move enough to fire
    # the cache holds the 3 rows oi_change reads and the scalars compressed, no rows
    blob = cached._prev._entries[("SPY", None)]
    assert isinstance(blob, bytes) and len(blob) < 8000
    last = oi_snaps()[-1]
    back = cached._prev.get(("SPY", None), last.as_of_ms)
    assert back is not None and back.strikes == []
    # every scalar back as it was (but data_as_of, which no rule reads of a previous snapshot)
    assert back == msgspec.structs.replace(last, strikes=[], data_as_of=None)
    assert np.array_equal(columns(back).m[:3], columns(last).m[:3], equal_nan=True)
    assert np.isnan(columns(back).m[3:]).all()  # the rows no rule reads of a previous snapshot
    everything = PrevCache(
        max_raw=0, max_rows_bytes=0
    )  # a cache for a type reading every column keeps them all
    everything.put(("SPY", None), last, compact=True)
    back = everything.get(("SPY", None), last.as_of_ms)
    assert back is not None
    assert np.array_equal(columns(back).m, columns(last).m, equal_nan=True)
    assert len(everything._entries[("SPY", None)]) > len(blob)
    assert cached._prev.get(("SPY", None), last.as_of_ms - 1) is None  # another as_of: no

    # without the cache (the previous snapshot read back from Redis) the same alerts fire
    await redis.flushall()
    uncached = Committer(redis, [oi_rule()], CFG)
    uncached._prev = PrevCache(max_compact=0, max_full=0)
    fired_uncached = []
    for s in oi_snaps():
        fired_uncached += [e.id for e in (await uncached.commit(s, None)).alerts]
        assert len(uncached._prev) <= 1
    assert fired_uncached == fired_cached

    # unpacked views (the first streams of a watchlist) give the same alerts too
    await redis.flushall()
    raw = Committer(redis, [oi_rule()], CFG)
    fired_raw = []
    for s in oi_snaps():
        fired_raw += [e.id for e in (await raw.commit(s, None)).alerts]
    assert fired_raw == fired_cached and raw._prev._raw == 1

    # and so do the kept rows past max_raw streams (copied, float32 where exact)
    await redis.flushall()
    rows = Committer(redis, [oi_rule()], CFG)
    rows._prev = PrevCache(max_raw=0, fields=rows.engine.prev_columns)
    fired_rows = []
    for s in oi_snaps():
        fired_rows += [e.id for e in (await rows.commit(s, None)).alerts]
    (_bare, kept, _ms) = rows._prev._entries[("SPY", None)]
    assert isinstance(kept, np.ndarray) and kept.dtype == np.float32
    assert fired_rows == fired_cached


async def test_any_bytes_reach_lua_intact_at_every_msgpack_size_boundary(
    redis: aioredis.Redis,
) -> None:
    from gex_alertd.commit import _lua_str, _packer

    echo = "local t = cmsgpack.unpack(ARGV[1]); return t[1]"
    for n in (0, 1, 31, 32, 255, 256, 65535, 65536, 70000):
        value = bytes(range(256)) * (n // 256) + bytes(range(n % 256))
        assert len(value) == n
        got = await redis.eval(echo, 0, _packer.encode([_lua_str(value)]))
        assert got == value, n


def test_previous_snapshot_cache_stays_bounded_and_counts_its_unpacked_views() -> None:
    cache = PrevCache(max_compact=3, max_raw=2)
    snaps = oi_snaps(2)
    for i in range(7):
        cache.put((f"S{i % 5}", None), snaps[i % 2], compact=True)
        raw = [v for v in cache._entries.values() if isinstance(v[1], StrikeColumns)]
        assert len(cache) <= 3 and cache._raw == len(raw) <= 2
    assert cache.get(("S4", None), snaps[0].as_of_ms) is not None  # the newest is kept


def test_only_a_short_watchlist_keeps_its_previous_views_unpacked() -> None:
    snaps = oi_snaps(2)
    short, long = PrevCache(max_raw=3), PrevCache(max_raw=3)
    for s in snaps:  # two rounds
        for i in range(3):
            short.put((f"S{i}", None), s, compact=True)
        for i in range(5):
            long.put((f"S{i}", None), s, compact=True)
    assert short._raw == 3 and all(isinstance(v, tuple) for v in short._entries.values())
    # past max_raw streams no entry keeps the snapshot's view at its stream's next snapshot
    assert long._raw == 0 and all(
        not isinstance(v[1], StrikeColumns) for v in long._entries.values() if isinstance(v, tuple)
    )
    for cache in (short, long):
        back = cache.get(("S2", None), snaps[1].as_of_ms)
        assert back is not None
        assert np.array_equal(columns(back).m, columns(snaps[1]).m, equal_nan=True)
    # unpacked: the snapshot's own view, no copy, read-only (every `prev` shares it), on a
    # fresh snapshot each time (what a rule attaches to one is not kept)
    first, again = (
        short.get(("S2", None), snaps[1].as_of_ms),
        short.get(("S2", None), snaps[1].as_of_ms),
    )
    assert first is not None and again is not None and first is not again
    assert columns(first) is columns(again) is columns(snaps[1])
    assert not columns(first).m.flags.writeable


def _packed_len(snaps: list, fields: tuple[str, ...]) -> int:
    """The largest packed entry of these snapshots (~1-1.5 KB at 200 strikes)."""
    probe = PrevCache(max_raw=0, fields=fields, max_rows_bytes=0)
    sizes = []
    for s in snaps:
        probe.put(("S", None), s, compact=True)
        blob = probe._entries[("S", None)]
        assert isinstance(blob, bytes)
        sizes.append(len(blob))
    return max(sizes)


def test_past_max_raw_streams_the_kept_rows_stay_unpacked_within_their_byte_budget() -> None:
    # a stream's first entry is packed (the cache cannot tell how many streams are to come);
    # from its second on the rows stay unpacked while they fit in what the budget leaves once
    # every other entry is counted at its packed size: here 3 streams' rows and 4 packed
    snaps = oi_snaps(3)
    fields = ("strike", "call_oi", "put_oi")
    one = 3 * 200 * 4  # strike, call and put OI of 200 strikes, as float32
    budget = 3 * one + 4 * _packed_len(snaps, fields) + one // 2
    cache = PrevCache(max_raw=0, fields=fields, max_rows_bytes=budget)

    def forms() -> list[str]:
        return [
            str(v[1].dtype) if isinstance(v, tuple) and isinstance(v[1], np.ndarray) else "packed"
            for v in cache._entries.values()
        ]

    for n, s in enumerate(snaps):
        for i in range(5):
            cache.put((f"S{i}", None), s, compact=True)
        if n == 0:
            assert forms() == ["packed"] * 5 and cache._rows_bytes == 0
        else:  # the first three fit (their bytes given back when their stream's next one comes)
            assert forms() == ["float32"] * 3 + ["packed"] * 2
            assert cache._rows_bytes == 3 * one
        for i in range(5):
            back = cache.get((f"S{i}", None), s.as_of_ms)
            assert back is not None and back.strikes == [] and back.as_of == s.as_of
            m, want = columns(back).m, columns(s).m
            assert np.array_equal(m[:3], want[:3], equal_nan=True)  # the null too
            assert np.isnan(m[3:]).all()
    # a value float32 cannot hold exactly keeps its rows as float64, within the same budget
    odd = msgspec.structs.replace(snaps[0], strikes=[row(500.1, call_oi=16_777_217)])
    cache.put(("S0", None), odd, compact=True)
    assert forms()[-1] == "float64" and cache._rows_bytes == 2 * one + 3 * 8
    back = cache.get(("S0", None), odd.as_of_ms)
    assert back is not None and columns(back).m[:3, 0].tolist() == [500.1, 16_777_217, 1000.0]
    # dropped entries give their bytes back too
    small = PrevCache(max_compact=2, max_raw=0, fields=fields)
    for s in snaps[:2]:
        for i in range(2):
            small.put((f"S{i}", None), s, compact=True)
    assert small._rows_bytes == 2 * one
    small.put(("S2", None), snaps[2], compact=True)  # drops S0; a first entry: packed
    assert len(small) == 2 and small._rows_bytes == one and small._packed == 1
    assert small._packed_bytes == len(small._entries[("S2", None)])


def test_the_views_of_a_short_watchlist_count_in_the_same_byte_budget() -> None:
    snaps = oi_snaps(2)
    fields = ("strike", "call_oi", "put_oi")
    view = columns(snaps[0]).m.nbytes  # all 7 rows: wide chains make these large
    budget = 2 * view + 2 * _packed_len(snaps, fields) + 100
    cache = PrevCache(max_raw=10, fields=fields, max_rows_bytes=budget)
    for s in snaps:
        for i in range(3):
            cache.put((f"S{i}", None), s, compact=True)
        assert cache._raw == 2 and cache._rows_bytes == 2 * view
        assert isinstance(cache._entries[("S2", None)], bytes)  # no room left: packed
        for i in range(3):
            back = cache.get((f"S{i}", None), s.as_of_ms)
            assert back is not None
            assert np.array_equal(columns(back).m[:3], columns(s).m[:3], equal_nan=True)


def test_packed_previous_views_come_back_exact_whichever_rows_are_kept() -> None:
    # the first rows (oi_change: strike, call and put OI) unpack straight into the view; any
    # other set through a copy; either way the kept rows exact and the others NaN
    snaps = oi_snaps(2)
    for fields in (("strike", "call_oi", "put_oi"), ("strike", "put_oi", "call_gex"), FIELDS):
        cache = PrevCache(max_raw=0, max_rows_bytes=0, fields=fields)
        kept = [i for i, f in enumerate(FIELDS) if f in {"strike", *fields}]
        for s in snaps:
            cache.put(("SPY", None), s, compact=True)
            back = cache.get(("SPY", None), s.as_of_ms)
            assert back is not None
            m, want = columns(back).m, columns(s).m
            assert m.shape == want.shape
            assert np.array_equal(m[kept], want[kept], equal_nan=True), fields
            others = [i for i in range(len(FIELDS)) if i not in kept]
            assert np.isnan(m[others]).all(), fields


def test_a_previous_view_is_filled_into_the_last_ones_matrix_only_when_nothing_holds_it() -> None:
    # past max_raw a view is filled into a matrix; the last one given back is reused when
    # nothing refers to it any more (its reference count), never while a rule (or anyone)
    # still holds it or a slice of it; kept and packed entries alike
    a, b = oi_snaps(2)
    for budget in (PREV_ROWS_BYTES, 0):  # rows kept unpacked, then packed
        cache = PrevCache(max_raw=0, max_rows_bytes=budget, fields=("call_oi", "put_oi"))
        for key, s in ((("A", None), a), (("B", None), b)):
            assert cache.stage(key, s) is None  # a stream's first entry is packed
            cache.put(key, s, compact=True)
            staged = cache.stage(key, s)  # worked out before the commit's round trip
            assert (staged is not None) == (budget > 0)
            cache.put(key, s, compact=True, staged=staged)  # past the first entry: rows kept
            if staged is not None:
                assert cache._entries[key][1] is staged and staged.dtype == np.float32
        first = cache.get(("A", None), a.as_of_ms)
        assert first is not None
        held = columns(first).m
        assert not held.flags.writeable and np.isnan(held[3:]).all()
        kept_a = held[:3].copy()
        second = cache.get(("B", None), b.as_of_ms)  # `first` still held: a new matrix
        assert second is not None and columns(second).m is not held
        assert np.array_equal(held[:3], kept_a, equal_nan=True)  # untouched
        slice_b = columns(second).m[1]
        del first, held, second
        third = cache.get(("A", None), a.as_of_ms)  # B's view gone, but a slice of it held
        assert third is not None and columns(third).m.base is None
        assert np.array_equal(slice_b, columns(b).m[1], equal_nan=True)
        spare = weakref.ref(columns(third).m)  # not a reference that counts
        del third, slice_b
        again = cache.get(("B", None), b.as_of_ms)  # nothing holds A's: reused, B's rows in it
        assert again is not None and columns(again).m is spare()
        m = columns(again).m
        assert np.array_equal(m[:3], columns(b).m[:3], equal_nan=True)
        assert np.isnan(m[3:]).all() and not m.flags.writeable


def test_a_packed_previous_snapshot_keeps_an_as_of_served_with_an_offset() -> None:
    from datetime import datetime, timedelta, timezone

    from gex_alertd.model import iso_utc

    (s,) = oi_snaps(1)
    ny = datetime(2026, 5, 11, 10, 0, 15, 250_000, tzinfo=timezone(timedelta(hours=-4)))
    s = msgspec.structs.replace(s, as_of=ny)
    cache = PrevCache(max_raw=0, max_rows_bytes=0)
    cache.put(("SPY", None), s, compact=True)
    back = cache.get(("SPY", None), s.as_of_ms)
    assert back is not None and back.as_of == ny and back.as_of_ms == s.as_of_ms
    assert iso_utc(back.as_of) == iso_utc(ny) == "2026-05-11T14:00:15.250Z"


def _bytes_per_entry(cache: PrevCache) -> float:
    import tracemalloc

    (s,) = oi_snaps(1)
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for i in range(200):
            cache.put((f"S{i}", None), s, compact=True)
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    return sum(d.size_diff for d in after.compare_to(before, "filename")) / 200


def test_a_packed_previous_view_takes_a_few_kb_of_memory() -> None:
    # the view is ~11 KB unpacked (7 columns x 200 strikes); zstd's worst-case output buffer
    # kept it at more than that once
    unpacked = columns(oi_snaps(1)[0]).m.nbytes
    per_entry = _bytes_per_entry(PrevCache(max_raw=0, max_rows_bytes=0))
    assert per_entry < unpacked / 2, (per_entry, unpacked)
    # what oi_change keeps (3 rows of random, poorly compressible OI, and the scalars in the
    # same bytes): ~1.6 KB, against ~5.3 KB with all 7 rows
    per_entry = _bytes_per_entry(
        PrevCache(max_raw=0, max_rows_bytes=0, fields=("strike", "call_oi", "put_oi"))
    )
    assert per_entry < unpacked / 5, (per_entry, unpacked)


async def test_a_rowless_snapshot_commits_the_entry_of_its_whole_self(
    redis: aioredis.Redis,
) -> None:
    text = msgspec.json.encode(flow_gex_body("SPY", as_of="2026-03-02T15:04:05Z", strikes=20))
    full = decode_flow_gex(text)
    lean = rowless(decode_flow_gex(text))  # as the poll path commits it
    assert (await Committer(redis, [flip_rule()], CFG).commit(lean, None)).stored
    [(_id, stored)] = entries(await redis.xrange(keys.snap("SPY")))
    assert stored == store.encode_fields(full)


def test_a_batch_encodes_its_strike_blocks_together_to_the_same_arguments() -> None:
    from gex_alertd.commit import PendingArgs, finish_batch, prepare_args

    raw = flow_gex_body("SPY", as_of="2026-03-02T15:04:05Z", strikes=30)
    raw["strikes"][4]["put_oi_change"] = None
    decoded = [
        rowless(decode_flow_gex(msgspec.json.encode({**raw, "symbol": sym}), symbol=sym))
        for sym in ("SPY", "QQQ", "IWM")
    ]
    snaps = [*decoded, snap(at=1)]  # made in code: no matrix, its block encoded at once
    c = Committer(None, [oi_rule(), flip_rule()], CFG)  # type: ignore[arg-type]  # no I/O here
    outcomes = [c.engine.evaluate({}, s, None, None) for s in snaps]
    pairs = list(zip(snaps, outcomes, strict=True))
    prepared = [prepare_args(c.engine, s, None, "7", o, CFG) for s, o in pairs]
    # nothing is built until the batch goes
    assert all(isinstance(args, PendingArgs) for _, args in prepared)
    eager = [build_args(c.engine, s, None, "7", o, CFG) for s, o in pairs]
    assert [names for names, _ in prepared] == [names for names, _ in eager]
    assert finish_batch([args for _, args in prepared]) == [args for _, args in eager]
    # finishing leaves the prepared arguments as they were (a batch sent again finishes again)
    assert finish_batch([args for _, args in prepared]) == [args for _, args in eager]


def test_a_commit_whose_arguments_cannot_be_built_gets_the_error_in_its_place() -> None:
    # built per batch, one commit's error stays that commit's: the others are built as alone
    from gex_alertd.commit import finish_batch, prepare_args
    from gex_alertd.rules.engine import Outcome

    c = Committer(None, [flip_rule()], CFG)  # type: ignore[arg-type]  # no I/O here
    good = [above(1), above(2)]
    outcomes = [c.engine.evaluate({}, s, None, None) for s in good]
    broken = Outcome(slots={"spy-flip": object()}, emitted=[], suppressed=[])  # type: ignore[dict-item]  # not a slot: no encoding
    calls = [
        prepare_args(c.engine, good[0], None, "7", outcomes[0], CFG)[1],
        prepare_args(c.engine, above(3), None, "7", broken, CFG)[1],
        prepare_args(c.engine, good[1], None, "7", outcomes[1], CFG)[1],
    ]
    first, failed, last = finish_batch(calls)
    assert isinstance(failed, TypeError)
    assert [first, last] == [
        build_args(c.engine, s, None, "7", o, CFG)[1] for s, o in zip(good, outcomes, strict=True)
    ]
    with pytest.raises(TypeError):
        build_args(c.engine, above(3), None, "7", broken, CFG)


async def test_a_commit_batch_that_fails_leaves_no_kept_state_or_previous_ahead_of_redis(
    redis: aioredis.Redis,
) -> None:
    from tests.support.wait import eventually

    # decoded snapshots (their strike blocks finished per batch), the rule state kept as
    # objects and the previous snapshot unpacked: a batch lost on the way (its connection
    # killed while Redis held it) fails its commit, writes nothing, and the commits after it
    # fire exactly what a run without the failure fires, once each
    def decoded(s, sym):
        return rowless(decode_flow_gex(msgspec.json.encode(msgspec.structs.replace(s, symbol=sym))))

    rules = [oi_rule(), flip_rule()]
    snaps = oi_snaps(5)
    c = Committer(redis, rules, CFG)
    fired: dict[str, list[tuple[str, str]]] = {"SPY": [], "QQQ": []}
    for s in snaps[:2]:
        for sym in fired:
            r = await c.commit(decoded(s, sym), None)
            assert r.stored
            fired[sym] += [(e.rule, e.as_of) for e in r.alerts]
    assert isinstance(c._state[("SPY", None)], StoredState)
    await redis.execute_command("CLIENT", "PAUSE", 60_000, "WRITE")
    try:
        lost = asyncio.create_task(c.commit(decoded(snaps[2], "SPY"), None))

        async def held() -> bool:
            return any(cl.get("cmd") == "evalsha" for cl in await redis.client_list())

        await eventually(held, "the commit's EVALSHA held by the pause")
        for cl in await redis.client_list():
            if cl.get("cmd") == "evalsha":
                await redis.execute_command("CLIENT", "KILL", "ID", cl["id"])
    finally:
        await redis.execute_command("CLIENT", "UNPAUSE")
    try:
        await lost
        raise AssertionError("the commit of a lost batch succeeded")
    except (ConnectionError, aioredis.ConnectionError):
        pass
    assert await redis.xlen(keys.snap("SPY")) == 2  # nothing of the lost commit written
    kept = c._state.get(("SPY", None))
    if kept is not None:
        assert c._thaw(kept) == decode_state(
            c.engine, hash_fields(await redis.hgetall(keys.state("SPY")))
        )
    for s in snaps[2:]:  # the lost snapshot again (the poller keeps it pending), then more
        for sym in fired:
            r = await c.commit(decoded(s, sym), None)
            assert r.stored
            fired[sym] += [(e.rule, e.as_of) for e in r.alerts]
    assert fired["SPY"] and fired["SPY"] == fired["QQQ"]
    assert len(await outbox(redis)) == len(fired["SPY"])
    for sym in fired:
        assert c._thaw(c._state[(sym, None)]) == decode_state(
            c.engine, hash_fields(await redis.hgetall(keys.state(sym)))
        )


_FIELD_SETS = [("strike", "call_oi", "put_oi"), ("strike", "put_oi", "call_gex"), FIELDS, ()]
_CacheRun = tuple[tuple[str, ...], int, int, int, list[tuple[int, int, int, bool]]]


@st.composite
def _cache_runs(draw: st.DrawFn) -> _CacheRun:
    fields = draw(st.sampled_from(_FIELD_SETS))
    max_compact = draw(st.integers(1, 5))
    max_raw = draw(st.integers(0, 6))
    # no room, a few 200-strike entries' rows, all of them
    max_rows_bytes = draw(st.sampled_from([0, 5_000, 12_000, 40_000, 3 * 2**20]))
    # (stream, size, rows with null OI, OI with a fraction: not exact as float32)
    step = st.tuples(st.integers(0, 6), st.integers(0, 3), st.integers(0, 2), st.booleans())
    steps = draw(st.lists(step, max_size=30))
    return fields, max_compact, max_raw, max_rows_bytes, steps


@settings(max_examples=150, deadline=None, derandomize=True)
@given(run=_cache_runs())
def test_the_previous_snapshot_cache_gives_back_what_it_was_given_or_nothing(
    run: _CacheRun,
) -> None:
    # any sequence of puts over a few streams, with any bounds and row sets: a get gives the
    # stream's last snapshot (the scalars the rules read, the kept rows exact, the others NaN)
    # for the as_of it was taken at, or None (another as_of, or dropped, oldest first), and it
    # never holds more streams than its bound, nor more unpacked rows than its byte budget
    fields, max_compact, max_raw, max_rows_bytes, steps = run
    cache = PrevCache(
        max_compact=max_compact, max_raw=max_raw, fields=fields, max_rows_bytes=max_rows_bytes
    )
    kept_rows = [i for i, f in enumerate(FIELDS) if f in {"strike", *fields}]
    model: dict[str, object] = {}  # the reference: insertion order, oldest dropped first
    sizes = (0, 1, 7, 200)
    for n, (key_i, size_i, nulls, fraction) in enumerate(steps):
        rows = chain(500.0, n=sizes[size_i], rng=random.Random(n))
        if fraction:
            rows = [msgspec.structs.replace(r, call_oi=(r.call_oi or 0) + 0.1) for r in rows]
        for j in range(min(nulls, len(rows))):
            rows[j] = msgspec.structs.replace(rows[j], call_oi=None, put_oi=None)
        s = snap(at=n, strikes=rows)
        key = (f"S{key_i}", None)
        model.pop(key[0], None)
        while len(model) >= max_compact:
            model.pop(next(iter(model)))
        model[key[0]] = s
        cache.put(key, s, compact=True)
        assert len(cache) == len(model) <= max_compact
        held = 0
        for entry in cache._entries.values():
            kept = entry[1] if isinstance(entry, tuple) else None
            held += kept.m.nbytes if isinstance(kept, StrikeColumns) else getattr(kept, "nbytes", 0)
        assert held <= max_rows_bytes
        for name, want in model.items():
            assert isinstance(want, type(s))
            assert cache.get((name, None), want.as_of_ms - 1) is None
            back = cache.get((name, None), want.as_of_ms)
            assert back is not None and back.strikes == []
            assert back == msgspec.structs.replace(want, strikes=[], data_as_of=None)
            m, full = columns(back).m, columns(want).m
            assert m.shape == full.shape
            assert np.array_equal(m[kept_rows], full[kept_rows], equal_nan=True)
            for i in range(len(FIELDS)):  # a row no rule reads: NaN when packed
                assert np.isnan(m[i]).all() or np.array_equal(m[i], full[i], equal_nan=True)
        for gone in {f"S{i}" for i in range(7)} - set(model):
            assert cache.get((gone, None), s.as_of_ms) is None


@pytest.mark.parametrize(
    "edited", [b"", b"v7", b"1.5", b"99999999999999999999", b"01", b"-0", b"\xff\xfe7"]
)
async def test_a_hand_edited_version_neither_loses_the_alert_nor_stops_the_commits(
    redis: aioredis.Redis, edited: bytes
) -> None:
    # HINCRBY refuses a version that is no integer: the script failed after writing the
    # snapshot and the state (fired) but before the outbox, so the alert was lost for good
    c = Committer(redis, [flip_rule()], CFG)
    await c.commit(below(0), None)
    await redis.hset(keys.state("SPY"), "_v", edited)
    c = Committer(redis, [flip_rule()], CFG)  # a restart reads the edited hash
    r = await c.commit(above(1), None)
    assert r.stored and len(r.alerts) == 1
    assert [decode_alert(e[b"event"]).id for e in await outbox(redis)] == [r.alerts[0].id]
    # counted again from the entry's ms, not from 1: another daemon may still keep version 1
    # of the stream's first commit, and would match it with that old state
    assert await redis.hget(keys.state("SPY"), "_v") == str(above(1).as_of_ms).encode()
    r = await c.commit(below(2), None)
    assert r.stored and len(r.alerts) == 1 and len(await outbox(redis)) == 2


async def test_a_hand_edited_last_as_of_does_not_stop_the_commits(redis: aioredis.Redis) -> None:
    c = Committer(redis, [flip_rule()], CFG)
    await c.commit(below(0), None)
    await redis.hset(keys.state("SPY"), "_last", "yesterday")
    c = Committer(redis, [flip_rule()], CFG)
    assert not (await c.commit(below(0), None)).stored  # the stream top still refuses a repeat
    r = await c.commit(above(1), None)
    assert r.stored and len(r.alerts) == 1
    assert await redis.hget(keys.state("SPY"), "_last") == str(above(1).as_of_ms).encode()


async def test_a_hand_added_field_that_is_no_text_does_not_stop_the_commits(
    redis: aioredis.Redis,
) -> None:
    c = Committer(redis, [flip_rule()], CFG)
    await c.commit(below(0), None)
    await redis.hset(keys.state("SPY"), b"\xff\xfe", b"x")
    c = Committer(redis, [flip_rule()], CFG)
    r = await c.commit(above(1), None)
    assert r.stored and len(r.alerts) == 1


async def test_an_undecodable_stream_top_does_not_stop_the_commits(redis: aioredis.Redis) -> None:
    # the top entry written by something this build cannot read (a newer build's strike
    # block after a rollback, an entry made by hand): reading it as the previous snapshot
    # raised StoredEntryError before the commit, on every poll of the symbol, for good
    rule = make_rule(type="oi_change", name="oi", min_contracts=500)
    rows = [row(500.0, 1000.0, 1000.0), row(505.0, 1000.0, 1000.0)]
    await Committer(redis, [rule], CFG).commit(snap(at=0, strikes=rows), None)
    [(_id, fields)] = entries(await redis.xrevrange(keys.snap("SPY"), count=1))
    ms = snap(at=0).as_of_ms + 500
    made: dict[FieldT, EncodableT] = dict(fields.items())
    made[b"strikes"] = b"not a block"
    await redis.xadd(keys.snap("SPY"), made, id=f"{ms}-0")
    await redis.hset(keys.state("SPY"), "_last", str(ms))
    c = Committer(redis, [rule], CFG)  # a restart: nothing in memory
    assert (await c.commit(snap(at=1, strikes=rows), None)).stored  # compared with none
    jumped = [row(500.0, 1000.0, 1000.0), row(505.0, 3000.0, 1000.0)]
    assert len((await c.commit(snap(at=2, strikes=jumped), None)).alerts) == 1
