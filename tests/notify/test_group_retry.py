"""Issue 17 item 8: a group, once formed, is retried as the same group with the same
webhook-id; alerts that arrive while it is retried go out in the next message."""

from __future__ import annotations

import asyncio

import msgspec
import redis.asyncio as aioredis
from aiohttp import web

from gex_alertd.notify.dispatch import Dispatcher
from tests.notify.support import Receiver, alert, enqueue_together, make_config


async def test_a_timed_out_group_is_retried_as_the_same_group(
    redis: aioredis.Redis, redis_url: str
) -> None:
    release = asyncio.Event()

    async def first_hangs(n: int, _r: web.Request) -> web.Response | None:
        if n == 1:
            await release.wait()  # past the client's timeout: the sender gives up on it
        return None

    rx = await Receiver(responder=first_hangs).start()
    hook = {
        "type": "webhook",
        "url": rx.url,
        "group_wait": "200ms",
        "timeout_s": 1.0,
        "retry_base_s": 0.05,
        "retry_max_s": 0.1,
    }
    d = Dispatcher(redis, make_config({"ops": hook}, redis_url), consumer="t1")
    await d.start()
    try:
        await enqueue_together(redis, [alert(i, f"A{i}") for i in range(4)], ["ops"], poke=[d])
        await rx.wait_for(1, status=None)  # the first POST of 4 is in flight (and will hang)
        await enqueue_together(redis, [alert(i, f"B{i}") for i in range(4, 8)], ["ops"], poke=[d])
        await rx.wait_for(3, status=None)  # the retry, then the second message
        release.set()
        bodies = [msgspec.json.decode(h.body) for h in rx.hits]
        ids = [h.headers["webhook-id"] for h in rx.hits]
        assert ids[1] == ids[0]  # the same message again: the receiver can drop the repeat
        assert bodies[1]["count"] == 4 and bodies[1] == bodies[0]
        assert bodies[2]["count"] == 4 and ids[2] != ids[0]
        assert {a["symbol"] for a in bodies[2]["alerts"]} == {"B4", "B5", "B6", "B7"}
    finally:
        release.set()
        await d.stop()
        await rx.stop()
