"""Redis itself goes away (SIGKILL, AOF) and comes back: the dispatcher rides it out."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError

from gex_alertd.notify.dispatch import Dispatcher
from tests.notify.support import Receiver, alert, enqueue, make_config
from tests.support.redis_server import RedisServer
from tests.support.wait import eventually


async def test_redis_restart_loses_nothing(private_redis: RedisServer) -> None:
    rx = await Receiver().start()
    client = aioredis.Redis.from_url(private_redis.url)
    cfg = make_config({"ops": {"type": "webhook", "url": rx.url}}, private_redis.url)
    d = Dispatcher(client, cfg, consumer="t1")
    await d.start()
    try:
        for i in range(3):
            await enqueue(client, alert(i), ["ops"])
        await rx.wait_for(3)
        private_redis.kill()
        await asyncio.sleep(1.0)  # the worker sees connection errors meanwhile
        private_redis.start()
        for i in range(3, 6):
            await enqueue(client, alert(i), ["ops"])
        await rx.wait_for(6)

        async def acked() -> bool:
            try:
                return (await d.health())["ops"]["pending"] == 0
            except ConnectionError:  # a pooled connection from before the restart
                return False

        # once everything is acked no late duplicate can follow
        await eventually(acked, "ops acked every entry")
        assert rx.ids() == [alert(i).id for i in range(6)]
    finally:
        await d.stop()
        await client.aclose()
        await rx.stop()
