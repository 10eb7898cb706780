"""Pipelined script calls against a real Redis: batched, yet each call gets its own answer."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from gex_alertd.batching import ScriptBatcher
from gex_alertd.connections import REDIS_DOWN
from gex_alertd.ops import metrics

# fails on purpose when asked to, so one call's error can be told apart from the others'
SCRIPT = """
if ARGV[1] == 'fail' then return redis.error_reply('asked to fail') end
redis.call('INCR', KEYS[1])
return ARGV[1]
"""


def batches() -> float:
    return sum(
        s.value
        for m in metrics.COMMIT_BATCH.collect()
        for s in m.samples
        if s.name.endswith("_count")
    )


async def test_calls_arriving_together_share_a_round_trip(redis: aioredis.Redis):
    b = ScriptBatcher(redis, SCRIPT, max_batch=32)
    before = batches()
    replies = await asyncio.gather(*(b.call(["n"], [str(i)]) for i in range(64)))
    assert replies == [str(i).encode() for i in range(64)]
    assert batches() - before == 2  # 64 calls, two pipelines of 32
    assert await redis.get("n") == b"64"


async def test_one_failing_call_does_not_fail_the_others(redis: aioredis.Redis):
    b = ScriptBatcher(redis, SCRIPT, max_batch=3)
    results = await asyncio.gather(
        b.call(["n"], ["x"]), b.call(["n"], ["fail"]), b.call(["n"], ["y"]), return_exceptions=True
    )
    assert results[0] == b"x" and results[2] == b"y"
    assert isinstance(results[1], ResponseError) and "asked to fail" in str(results[1])
    assert await redis.get("n") == b"2"


async def test_a_flushed_script_cache_is_reloaded(redis: aioredis.Redis):
    b = ScriptBatcher(redis, SCRIPT)
    assert await b.call(["n"], ["a"]) == b"a"
    await redis.script_flush()  # as after a Redis restart
    assert await b.call(["n"], ["b"]) == b"b"
    assert await redis.get("n") == b"2"


async def test_a_dead_connection_fails_every_call_of_the_batch(private_redis):
    redis = aioredis.Redis.from_url(private_redis.url, socket_connect_timeout=0.5)
    try:
        b = ScriptBatcher(redis, SCRIPT, max_batch=4)
        assert await asyncio.gather(*(b.call(["n"], ["w"]) for _ in range(4))) == [b"w"] * 4
        private_redis.kill()
        results = await asyncio.gather(
            *(b.call(["n"], ["z"]) for _ in range(4)), return_exceptions=True
        )
        assert all(isinstance(r, REDIS_DOWN) for r in results), results
    finally:
        await redis.aclose()


async def test_a_batch_on_a_connection_that_died_with_a_redis_restart_is_resent(private_redis):
    # the client's retry policy, as connections.connect sets it up
    from gex_alertd.connections import connect

    redis = connect(private_redis.url)
    try:
        b = ScriptBatcher(redis, SCRIPT, max_batch=2)
        assert await asyncio.gather(b.call(["n"], ["a"]), b.call(["n"], ["b"])) == [b"a", b"b"]
        private_redis.restart()  # the pooled connection is now dead; the data is kept (AOF)
        got = await asyncio.gather(b.call(["n"], ["c"]), b.call(["n"], ["d"]))
        assert got == [b"c", b"d"]
        assert await redis.get("n") == b"4"
    finally:
        await redis.aclose()


async def test_a_lone_call_goes_at_once_and_calls_made_meanwhile_go_together(
    redis: aioredis.Redis,
):
    b = ScriptBatcher(redis, SCRIPT, max_batch=32)
    before = batches()
    first = asyncio.ensure_future(b.call(["n"], ["solo"]))
    for _ in range(100):  # a few loop iterations: the call, then its flush at the end of one
        if b._flushes:
            break
        await asyncio.sleep(0)
    assert len(b._flushes) == 1  # the lone call's batch is in flight, without any timer
    later = [asyncio.ensure_future(b.call(["n"], [str(i)])) for i in range(5)]
    assert await first == b"solo"
    assert await asyncio.gather(*later) == [str(i).encode() for i in range(5)]
    # two round trips: the lone call, then the five that queued while it was out
    assert batches() - before == 2


@pytest.mark.parametrize("n", [1, 5])
async def test_drain_waits_for_what_is_in_flight(redis: aioredis.Redis, n: int):
    b = ScriptBatcher(redis, SCRIPT, max_batch=32)
    calls = [asyncio.ensure_future(b.call(["n"], [str(i)])) for i in range(n)]
    await asyncio.sleep(0)
    await b.drain()
    assert all(c.done() for c in calls)
    assert [c.result() for c in calls] == [str(i).encode() for i in range(n)]


async def test_an_argument_of_another_type_is_refused_not_sent_as_its_repr(redis: aioredis.Redis):
    b = ScriptBatcher(redis, SCRIPT)
    with pytest.raises(TypeError, match="bool"):
        await b.call(["n"], [True])
    assert await b.call(["n"], [7]) == b"7"  # an int goes in decimal


async def test_a_batch_whose_replies_do_not_come_times_out_and_drops_its_connection(
    private_redis,
):
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import TimeoutError as RedisTimeoutError

    redis = aioredis.Redis.from_url(
        private_redis.url, socket_timeout=0.5, retry=Retry(NoBackoff(), 0)
    )
    admin = aioredis.Redis.from_url(private_redis.url)
    try:
        b = ScriptBatcher(redis, SCRIPT, max_batch=3)
        assert await b.call(["n"], ["a"]) == b"a"  # the script is loaded, the connection open
        # writes (EVALSHA) held for far longer than the read timeout: no reply comes
        await admin.execute_command("CLIENT", "PAUSE", 60_000, "WRITE")
        results = await asyncio.gather(
            *(b.call(["n"], [v]) for v in ("b", "c", "d")), return_exceptions=True
        )
        assert all(isinstance(r, RedisTimeoutError) for r in results), results
        assert "commit batch within 0.5 s" in str(results[0])
        kw = redis.connection_pool.connection_kwargs  # the message names the server
        assert f"from Redis at {kw['host']}:{kw['port']} " in str(results[0]), results[0]
        await admin.execute_command("CLIENT", "UNPAUSE")
        # a fresh connection: no late reply of the timed-out batch is read as this one's
        assert await asyncio.gather(b.call(["n"], ["e"]), b.call(["n"], ["f"])) == [b"e", b"f"]
    finally:
        await admin.execute_command("CLIENT", "UNPAUSE")
        await admin.aclose()
        await redis.aclose()


async def test_an_exchange_gives_its_connection_back_with_its_socket_timeout(private_redis):
    # the write goes under the exchange's one deadline with redis-py's own write timeout off
    # for it; the connection's later commands keep theirs, after a reply and after a timeout
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import TimeoutError as RedisTimeoutError

    from gex_alertd import packed

    # a reply that comes has a generous deadline (a loaded box is no failure); the one that
    # must not come (writes paused) a short one
    roomy, short = (
        aioredis.Redis.from_url(private_redis.url, socket_timeout=t, retry=Retry(NoBackoff(), 0))
        for t in (60.0, 0.5)
    )
    admin = aioredis.Redis.from_url(private_redis.url)

    async def timeouts(redis: aioredis.Redis) -> float | None:
        # the one the exchange kept for the next one, or after a failure gave back to the pool
        # (the pool's only), as it is: not connected again
        for conn in packed.kept(redis):
            return conn.socket_timeout
        pool = redis.connection_pool
        conn = pool.get_available_connection()
        try:
            return conn.socket_timeout
        finally:
            await pool.release(conn)

    try:
        assert await packed.exchange(roomy, packed.pack("PING") * 2, 2) == [b"PONG"] * 2
        assert await timeouts(roomy) == 60.0
        await admin.execute_command("CLIENT", "PAUSE", 60_000, "WRITE")
        with pytest.raises(RedisTimeoutError, match=r"1 of 1 increments within 0\.5 s"):
            await packed.exchange(short, packed.pack("INCR", "n"), 1, "increments")
        await admin.execute_command("CLIENT", "UNPAUSE")
        assert packed.kept(short) == []  # a failed exchange's connection is not kept
        assert await timeouts(short) == 0.5
    finally:
        await admin.execute_command("CLIENT", "UNPAUSE")
        for client in (admin, roomy, short):
            await client.aclose()


async def test_prepare_turns_a_whole_batch_into_what_is_sent(redis: aioredis.Redis):
    seen: list[list[object]] = []

    def prepare(arglists: list[object]) -> list[object]:
        seen.append(arglists)
        return [[f"{a}!"] for a in arglists]  # a call's "args" here: one string

    b = ScriptBatcher(redis, SCRIPT, max_batch=8, prepare=prepare)
    replies = await asyncio.gather(*(b.call(["n"], str(i)) for i in range(8)))
    assert replies == [f"{i}!".encode() for i in range(8)]
    assert seen == [[str(i) for i in range(8)]]  # once, for the batch, in call order


async def test_a_failing_prepare_fails_every_call_of_its_batch_and_sends_nothing(
    redis: aioredis.Redis,
):
    def prepare(arglists: list[object]) -> list[object]:
        raise ValueError("cannot prepare")

    b = ScriptBatcher(redis, SCRIPT, max_batch=3, prepare=prepare)
    results = await asyncio.gather(
        *(b.call(["n"], ["x"]) for _ in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, ValueError) and "cannot prepare" in str(r) for r in results)
    assert await redis.get("n") is None


async def test_an_exception_prepared_for_one_call_fails_that_call_alone_unsent(
    redis: aioredis.Redis,
):
    def prepare(arglists: list[object]) -> list[object]:
        return [ValueError(f"no args for {a}") if a == "1" else [a] for a in arglists]

    b = ScriptBatcher(redis, SCRIPT, max_batch=3, prepare=prepare)
    results = await asyncio.gather(
        *(b.call(["n"], str(i)) for i in range(3)), return_exceptions=True
    )
    assert results[0] == b"0" and results[2] == b"2"
    assert isinstance(results[1], ValueError) and str(results[1]) == "no args for 1"
    assert await redis.get("n") == b"2"  # the other two ran, that one was never sent


async def test_an_exchange_keeps_its_connection_for_the_next_one(redis: aioredis.Redis):
    # the pool's checkout is skipped while a kept connection is free; exchanges at once each
    # take their own, and no more than KEPT_MAX are kept
    from gex_alertd import packed

    checkouts = 0
    pool = redis.connection_pool
    real = pool.get_connection

    async def counting(*args, **kwargs):
        nonlocal checkouts
        checkouts += 1
        return await real(*args, **kwargs)

    pool.get_connection = counting  # type: ignore[method-assign]
    for i in range(5):
        assert await packed.exchange(redis, packed.pack("INCR", "n"), 1) == [i + 1]
    assert checkouts == 1 and len(packed.kept(redis)) == 1
    many = packed.KEPT_MAX + 2
    got = await asyncio.gather(
        *(packed.exchange(redis, packed.pack("INCR", "n"), 1) for _ in range(many))
    )
    assert sorted(x for [x] in got) == list(range(6, 6 + many))
    assert checkouts == many  # one kept, the others from the pool
    assert len(packed.kept(redis)) == packed.KEPT_MAX


async def test_a_kept_connection_the_server_closed_is_connected_again(private_redis):
    from gex_alertd import packed
    from gex_alertd.connections import connect

    redis = connect(private_redis.url)  # the daemon's retry policy
    admin = aioredis.Redis.from_url(private_redis.url)
    try:
        [client_id] = await packed.exchange(redis, packed.pack("CLIENT", "ID"), 1)
        assert await admin.client_kill_filter(_id=client_id) == 1
        assert await packed.exchange(redis, packed.pack("SET", "k", "v"), 1) == [b"OK"]
        assert await admin.get("k") == b"v"
        [again] = await packed.exchange(redis, packed.pack("CLIENT", "ID"), 1)
        assert again != client_id and len(packed.kept(redis)) == 1
    finally:
        await admin.aclose()
        await redis.aclose()


def test_a_sentinel_managed_pool_keeps_no_connection(redis: aioredis.Redis):
    # after a failover such a pool drops its idle connections so they reach the new primary;
    # kept ones would miss that, so its connections go back to it after each exchange
    from redis.asyncio.sentinel import Sentinel

    from gex_alertd import packed

    managed = Sentinel([("127.0.0.1", 1)]).master_for("primary")  # no connection made here
    assert not packed.keeps(managed.connection_pool)
    assert packed.keeps(redis.connection_pool)
