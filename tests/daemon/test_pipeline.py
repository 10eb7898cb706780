"""The poller against a real upstream and a real Redis: what gets stored, and what does not."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
import redis.asyncio as aioredis

from gex_alertd import keys, store
from gex_alertd.commit import Committer
from gex_alertd.config import RedisConfig, WatchTarget
from gex_alertd.connections import entries
from gex_alertd.model import FlowGex, decode_flow_gex, strike_rows
from gex_alertd.pipeline import Poller
from gex_alertd.sources.backoff import Backoff
from gex_alertd.sources.errors import AuthError
from gex_alertd.sources.flowgex import FlowGexClient
from tests.support.upstream import Reply, Upstream, flow_gex_body

T0 = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)
CFG = RedisConfig(url="redis://x", retention=None)
INTERVAL_S = 3600.0


class Committed:
    """The simplest commit: store the snapshot, record what was committed."""

    def __init__(self, redis: aioredis.Redis):
        self.redis = redis
        self.calls = 0

    async def __call__(self, snap, expiry):
        self.calls += 1
        stored = await store.write_snapshot(self.redis, snap, expiry, CFG)

        class R:
            stored: bool
            alerts: list[object]

        r = R()
        r.stored, r.alerts = stored, []
        return r


def make_poller(up, redis, commit, *, symbol="SPY", client=None, **kw):
    client = client or FlowGexClient(up.url, "test-key", requests_per_min=6000)
    # The backoff is far longer than the test timeout, so it never runs out between two polls
    # however slow the machine.
    target = WatchTarget(symbol, None, INTERVAL_S, 0.0)
    backoff = Backoff(3600.0, 7200.0, random.Random(1))
    return Poller(target, client, commit, backoff=backoff, **kw), client


async def test_poll_stores_once_and_drops_repeated_as_of(redis):
    async with Upstream() as up:
        body = flow_gex_body("SPY", as_of=T0)
        up.push(
            Reply.json(body),
            Reply.json(body),
            Reply.json(flow_gex_body("SPY", as_of=T0 + timedelta(seconds=15))),
        )
        commit = Committed(redis)
        poller, client = make_poller(up, redis, commit)
        try:
            assert poller.health()["last_as_of"] is None
            assert await poller.poll() == "stored"
            assert poller.health()["last_as_of"] == "2026-11-24 15:00:00+00:00"
            assert await poller.poll() == "repeat"
            assert await poller.poll() == "stored"
            assert poller.health()["last_as_of"] == "2026-11-24 15:00:15+00:00"
        finally:
            await client.close()
    assert commit.calls == 2
    got = [s async for s in store.read_range(redis, "SPY")]
    assert [s.as_of for s in got] == [T0, T0 + timedelta(seconds=15)]


@pytest.mark.parametrize(
    "reply",
    [
        Reply(500, {"message": "boom"}),
        Reply(200, b'{"symbol": "SPY", "as_of": '),
        Reply.json(flow_gex_body("SPY", as_of=T0, underlying_price=-1)),
        Reply.json(flow_gex_body("SPY", as_of=T0, live_net_gex="lots")),
    ],
    ids=["5xx", "truncated", "negative-spot", "wrong-type"],
)
async def test_bad_upstream_answers_store_nothing_and_back_off(redis, reply):
    async with Upstream() as up:
        up.push(reply)
        commit = Committed(redis)
        poller, client = make_poller(up, redis, commit)
        try:
            assert await poller.poll() == "error"
            # the backoff holds the next attempt: no request goes out
            assert await poller.poll() == "backoff"
            assert len(up.requests) == 1
        finally:
            await client.close()
    assert commit.calls == 0
    assert await redis.exists(keys.snap("SPY")) == 0
    assert poller.last_error


async def test_unknown_symbol_is_disabled_others_keep_running(redis):
    async with Upstream() as up:
        up.push(Reply(404, {"error": "not_found", "message": "Unknown symbol ZZZ"}), symbol="ZZZ")
        commit = Committed(redis)
        client = FlowGexClient(up.url, "test-key", requests_per_min=6000)
        bad, _ = make_poller(up, redis, commit, symbol="ZZZ", client=client)
        good, _ = make_poller(up, redis, commit, symbol="SPY", client=client)
        try:
            assert await bad.poll() == "disabled"
            assert await bad.poll() == "disabled"
            assert await good.poll() == "stored"
        finally:
            await client.close()
    assert "Unknown symbol ZZZ" in bad.disabled
    assert len(up.requests_for(symbol="ZZZ")) == 1


async def test_every_fetch_outcome_reaches_the_observer(redis):
    # the operator rules' hook (stale_data, source_failing): the snapshot, a repeat too, or the
    # error, the 403 with the plans it names
    seen: list[tuple[str, object]] = []

    async def observe(target, snap, exc):
        seen.append((target.symbol, snap.as_of if snap is not None else exc))

    async with Upstream() as up:
        body = flow_gex_body("SPY", as_of=T0)
        up.push(
            Reply.json(body),
            Reply.json(body),
            Reply(
                403,
                {
                    "message": "Plan lacks Flow GEX",
                    "current_plan": "free",
                    "required_plan": "growth",
                },
            ),
        )
        poller, client = make_poller(up, redis, Committed(redis), observe=observe)
        try:
            assert await poller.poll() == "stored"
            assert await poller.poll() == "repeat"
            assert await poller.poll() == "error"
        finally:
            await client.close()
    assert seen[:2] == [("SPY", T0), ("SPY", T0)]
    assert isinstance(seen[2][1], AuthError)
    assert "growth" in str(seen[2][1]) and "free" in str(seen[2][1])


async def test_snapshot_survives_a_redis_outage(private_redis):
    redis = aioredis.Redis.from_url(private_redis.url, socket_connect_timeout=0.5)
    try:
        async with Upstream() as up:
            up.push(Reply.json(flow_gex_body("SPY", as_of=T0)))
            poller, client = make_poller(up, redis, Committed(redis))
            try:
                private_redis.kill()
                assert await poller.poll() == "redis_down"
                assert len(poller.pending) == 1
                private_redis.start()
                poller.next_attempt = 0.0
                up.push(Reply.json(flow_gex_body("SPY", as_of=T0 + timedelta(seconds=15))))
                assert await poller.poll() == "stored"
            finally:
                await client.close()
        got = [s async for s in store.read_range(redis, "SPY")]
        assert [s.as_of for s in got] == [T0, T0 + timedelta(seconds=15)]
        assert not poller.pending
    finally:
        await redis.aclose()


async def test_redis_refusing_writes_backs_off_and_says_why(private_redis):
    # Redis up but refusing (maxmemory with noeviction): not an outage, not a crash either
    from gex_alertd.commit import Committer

    redis = aioredis.Redis.from_url(private_redis.url)
    try:
        async with Upstream() as up:
            up.push(Reply.json(flow_gex_body("SPY", as_of=T0)))
            committer = Committer(redis, [], CFG)
            poller, client = make_poller(up, redis, committer.commit)
            try:
                await redis.config_set("maxmemory", 1)
                await redis.config_set("maxmemory-policy", "noeviction")
                assert await poller.poll() == "redis_down"
                assert len(poller.pending) == 1 and "OutOfMemoryError" in str(poller.last_error)
                assert poller.next_attempt > 0  # backing off, not retried on every tick
                assert await poller.poll() == "backoff"
                await redis.config_set("maxmemory", 0)
                poller.next_attempt = 0.0  # the backoff has run out
                up.push(Reply.json(flow_gex_body("SPY", as_of=T0 + timedelta(seconds=15))))
                assert await poller.poll() == "stored"
                assert not poller.pending and await redis.xlen(keys.snap("SPY")) == 2
            finally:
                await client.close()
    finally:
        await redis.aclose()


async def test_the_poll_path_commits_rowless_snapshots_and_sets_aside_whole_ones(redis):
    committer = Committer(redis, [], CFG)
    committed: list[FlowGex] = []

    async def commit(snap, expiry):
        committed.append(snap)
        return await committer.commit(snap, expiry)

    first = flow_gex_body("SPY", as_of=T0, strikes=20)
    first["strikes"][5]["put_oi_change"] = None
    qqq = flow_gex_body("QQQ", as_of=T0, strikes=20)
    await redis.set(keys.snap("QQQ"), "not a stream")  # WRONGTYPE: a commit that never can
    async with Upstream() as up:
        up.push(Reply.json(first), symbol="SPY")
        up.push(Reply.json(qqq), symbol="QQQ")
        spy, client = make_poller(up, redis, commit, set_aside=committer.set_aside)
        bad, _ = make_poller(up, redis, commit, symbol="QQQ", client=client)
        bad.set_aside = committer.set_aside
        try:
            assert await spy.poll() == "stored"
            assert await bad.poll() == "set_aside"
        finally:
            await client.close()
    whole = decode_flow_gex(msgspec.json.encode(first))
    assert committed[0].strikes == [] and strike_rows(committed[0]) == whole.strikes
    [(_id, stored)] = entries(await redis.xrange(keys.snap("SPY")))
    assert stored == store.encode_fields(whole)  # the entry of the whole snapshot
    [(_id, dead)] = entries(await redis.xrange(keys.DEAD))
    kept = msgspec.json.decode(dead[b"snapshot"], type=FlowGex)
    assert kept.strikes == decode_flow_gex(msgspec.json.encode(qqq)).strikes  # rows and all
