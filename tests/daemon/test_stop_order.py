"""The order of a daemon's stop: no poll starts once the stop has begun, even while a duty
still holds the stop up (polls went on at full speed until the duties had stopped, and slowed
the duty the stop was waiting for: a 2,000-symbol daemon took up to 26 s to stop)."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from gex_alertd import config as config_mod
from gex_alertd.app import Daemon
from tests.support.wait import eventually


async def test_polls_stop_starting_while_a_duty_still_holds_the_stop(
    redis: aioredis.Redis, redis_url: str
) -> None:
    tree: dict[str, object] = {
        "source": {"kind": "simulator", "simulator": {"speed": 10, "cache_s": 0}},
        "redis": {"url": redis_url},
        "watch": {"interval_s": 0.2, "jitter_s": 0, "symbols": ["SPY", "QQQ"]},
        "channels": {"tty": {"type": "console"}},
        "ops": {"listen": None},
    }
    daemon = Daemon(config_mod.parse(tree, "test"))
    release = asyncio.Event()
    held = asyncio.Event()

    async def slow_duty() -> None:
        held.set()
        await release.wait()

    stopping: asyncio.Task[None] | None = None
    try:
        await daemon.start()
        assert daemon.pool is not None and daemon.duties is not None
        pool = daemon.pool

        def polls() -> int:
            counts = [pool.timing(k).get("polls", 0) for k in pool.owned]
            return sum(n for n in counts if isinstance(n, int))

        await eventually(lambda: polls() >= 2, "polls running")
        daemon.duties.every("slow", 0.01, slow_duty)
        await asyncio.wait_for(held.wait(), 30)
        stopping = asyncio.ensure_future(daemon.shutdown())
        await eventually(lambda: daemon.duties is not None and daemon.duties._stopping, "stop")
        assert not stopping.done()  # the slow duty holds the duties' stop up
        assert pool._stopping  # and yet no poll starts from here on
    finally:
        release.set()
        if stopping is None:
            await daemon.shutdown()
        else:
            await stopping
