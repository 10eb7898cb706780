"""A daemon whose membership heartbeat stops reaching Redis stops polling once the others may
have dropped its entry and taken its targets, and polls again from its next beat that reaches
Redis (ownership.FENCE_S). A daemon alone keeps polling through the outage.

Redis is frozen with SIGSTOP, as a failover or a partition leaves it: the beat neither fails
nor succeeds. The fence is made short (`fence_s`) and the beat frequent (`beat_s`) so the test
runs in seconds; nothing here depends on how fast the machine is: every step waits on the
condition itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as aioredis

from gex_alertd import config as config_mod
from gex_alertd.app import Daemon
from gex_alertd.ops import health
from gex_alertd.ownership import Membership
from tests.support.redis_server import RedisServer
from tests.support.wait import eventually

SYMBOLS = [f"S{i:02d}" for i in range(16)]  # with two members each owns some: 1 - 2**-15


@asynccontextmanager
async def running(server: RedisServer) -> AsyncIterator[Daemon]:
    tree: dict[str, object] = {
        "source": {
            "kind": "simulator",
            "requests_per_min": 1_000_000,
            "simulator": {"speed": 10, "cache_s": 0},
        },
        "redis": {"url": server.url},
        "watch": {"interval_s": 0.2, "jitter_s": 0, "symbols": SYMBOLS},
        "channels": {"tty": {"type": "console"}},
        "ops": {"listen": None},
    }
    daemon = Daemon(config_mod.parse(tree, "test"))
    daemon.beat_s = 0.2
    daemon.fence_s = 2.0
    try:
        await daemon.start()
        yield daemon
    finally:
        assert server.proc is not None
        server.proc.send_signal(signal.SIGCONT)
        await daemon.shutdown()


async def other_member(server: RedisServer) -> Membership:
    """A second daemon's entry (server clock), as if it beat just now."""
    r = aioredis.from_url(server.url)
    other = Membership(r, "other-host:0000")
    await other.beat()
    return other


async def keep_beating(other: Membership) -> None:
    """The second daemon stays alive for the whole test, however long the machine takes: its
    one beat expired TIMEOUT_S (15 s) later, and the test's last steps then found it gone
    (every target ours). Frozen with Redis, a beat waits and goes on after SIGCONT."""
    while True:
        await other.beat()
        await asyncio.sleep(0.5)


async def test_a_daemon_whose_beats_stop_reaching_redis_stops_polling_until_one_does(
    private_redis: RedisServer,
) -> None:
    other = await other_member(private_redis)
    keeper = asyncio.create_task(keep_beating(other))
    try:
        async with running(private_redis) as daemon:
            assert daemon.pool is not None and daemon.membership is not None
            pool = daemon.pool
            assert daemon.membership.members == tuple(
                sorted(("other-host:0000", daemon.instance_id))
            )
            mine = pool.owned
            assert mine and len(mine) < len(SYMBOLS)  # the other member owns the rest
            await eventually(lambda: sum(_polls(pool, k) for k in mine) >= len(mine), "polls")
            assert daemon.member is not None
            member = daemon.member
            assert not member.fenced and not health.problems(daemon, True)

            assert private_redis.proc is not None
            private_redis.proc.send_signal(signal.SIGSTOP)
            await eventually(lambda: member.fenced, "fenced once no beat reached Redis for fence_s")
            assert pool.owned == frozenset() and pool.stats().queued == 0
            assert "membership heartbeat stale" in " ".join(health.problems(daemon, True))

            private_redis.proc.send_signal(signal.SIGCONT)
            await eventually(lambda: not member.fenced, "polling again after a beat reached Redis")
            # our entry was still there (nobody dropped it): our own targets back, polled again
            assert pool.owned == mine
            polls = {k: _polls(pool, k) for k in mine}
            # + 1: a poll in flight when the fence fell may end after this
            await eventually(
                lambda: all(_polls(pool, k) > polls[k] + 1 for k in mine),
                "every owned target polled",
            )
    finally:
        keeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await keeper
        await other.redis.aclose()


async def test_a_daemon_alone_keeps_polling_while_redis_does_not_answer(
    private_redis: RedisServer,
) -> None:
    async with running(private_redis) as daemon:
        assert daemon.pool is not None and daemon.membership is not None
        assert daemon.member is not None
        member = daemon.member
        assert daemon.membership.members == (daemon.instance_id,)
        owned = daemon.pool.owned
        assert owned == frozenset(SYMBOLS)
        assert private_redis.proc is not None
        private_redis.proc.send_signal(signal.SIGSTOP)
        beat_at = daemon.membership.beat_at
        assert beat_at is not None
        await eventually(
            lambda: time.monotonic() - beat_at > member.fence_s and member._fence_timer is None,
            "the fence's time has come and its check ran",
        )
        assert daemon.membership.beat_at == beat_at  # no beat reached Redis meanwhile
        assert not member.fenced and daemon.pool.owned == owned


def _polls(pool: object, key: str) -> int:
    n = pool.timing(key).get("polls", 0)  # type: ignore[attr-defined]  # PollPool.timing
    return n if isinstance(n, int) else 0
