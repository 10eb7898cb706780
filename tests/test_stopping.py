"""cancel_and_wait ends a task that loops over Redis commands, though redis-py often swallows
a cancel that lands inside a command; and the live page's reader, which relies on it, stops
every time."""

from __future__ import annotations

import asyncio
from functools import partial

import redis.asyncio as aioredis

from gex_alertd import keys
from gex_alertd.stopping import cancel_and_wait
from gex_alertd.web.live import Hub
from tests.support.wait import WAIT_S, eventually
from tests.web.conftest import put

TRIES = 20  # one cancel alone left the loop running in 16 of 20 tries (redis-py 8.1)


def _past(count: list[int], n: int) -> bool:
    return count[0] > n


def _built(hub: Hub, n: int) -> bool:
    return hub.frames_built > n


async def _commands(redis: aioredis.Redis, done: list[int]) -> None:
    while True:  # no flag of its own: only a cancel ends it
        await redis.get("stopping:x")
        done[0] += 1


async def test_a_task_looping_over_redis_commands_ends(redis: aioredis.Redis) -> None:
    for _ in range(TRIES):
        done = [0]
        task = asyncio.create_task(_commands(redis, done))
        await eventually(partial(_past, done, 0), "the loop's first command")
        # bounded by the suite's generous wait, never reached when the task ends: with one
        # cancel only, a swallowed cancel leaves the task running and it comes back here
        left = await cancel_and_wait([task], timeout_s=WAIT_S)
        assert left == set() and task.cancelled()


async def test_a_finished_or_failing_task_is_left_as_it_ended() -> None:
    async def fails() -> None:
        raise ValueError("boom")

    ok = asyncio.create_task(asyncio.sleep(0))
    bad = asyncio.create_task(fails())
    await asyncio.wait([ok, bad])
    assert await cancel_and_wait([ok, bad], timeout_s=1) == set()
    assert not ok.cancelled() and isinstance(bad.exception(), ValueError)


async def _reading(redis: aioredis.Redis) -> bool:
    return any(c.get("cmd") == "xread" for c in await redis.client_list())


async def test_the_live_page_reader_stops_every_time(redis: aioredis.Redis) -> None:
    """Stopped while snapshots keep coming, so the cancel lands anywhere in its rounds (in a
    reply being read, not only in an idle BLOCK), as when the daemon stops mid-session."""
    await redis.delete(keys.snap("SPY"))
    written = [0]

    async def writer() -> None:
        while True:
            written[0] += 1
            await put(redis, written[0])

    feed = asyncio.create_task(writer())
    try:
        for _ in range(TRIES):
            hub = Hub(redis, lambda: [("SPY", None)])
            hub.subscribe("SPY")
            await eventually(lambda: _reading(redis), "the reader's first XREAD")
            await eventually(partial(_built, hub, hub.frames_built + 2), "new snapshots' frames")
            await asyncio.wait_for(hub.stop(), WAIT_S)
            assert hub._task is None and hub.subscribers == 0
    finally:
        await cancel_and_wait([feed], timeout_s=WAIT_S)
