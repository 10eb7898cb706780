"""Defect 3: delivery keeps trying for `max_retry_duration` (default 1 h), attempts uncapped
within it, and the log says what will really happen. A controlled wall clock moves 10 minutes
per attempt, so an hour passes in milliseconds of real time."""

from __future__ import annotations

import redis.asyncio as aioredis
from aiohttp import web
from structlog.testing import capture_logs

from gex_alertd import keys
from gex_alertd.notify.dispatch import Dispatcher
from gex_alertd.notify.outbox import list_dead
from tests.notify.support import Receiver, alert, enqueue, make_config
from tests.support.wait import eventually

T0 = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> float:
        return self.t


async def test_a_down_receiver_is_retried_for_the_whole_budget_then_dead_lettered(
    redis: aioredis.Redis, redis_url: str
) -> None:
    clock = Clock()

    async def down_ten_minutes_per_try(_n: int, _r: web.Request) -> web.Response:
        clock.t += 600.0
        return web.Response(status=503, text="maintenance")

    rx = await Receiver(responder=down_ten_minutes_per_try).start()
    # fast real backoff; the budget is the default (1 h), no max_attempts (the old default 8)
    hook = {"type": "webhook", "url": rx.url, "retry_base_s": 0.01, "retry_max_s": 0.02}
    cfg = make_config({"ops": hook}, redis_url)
    assert cfg.channels["ops"].max_retry_duration == 3600.0
    assert cfg.channels["ops"].max_attempts is None
    d = Dispatcher(redis, cfg, consumer="t1", clock=clock)
    with capture_logs() as logs:
        await d.start()
        try:
            await enqueue(redis, alert(1), ["ops"])

            async def dead() -> bool:
                return await redis.xlen(keys.DEAD) == 1

            await eventually(dead, "the alert dead-lettered after the budget")
        finally:
            await d.stop()
            await rx.stop()
    # failures at +10 min ... +70 min; the budget runs from the first (+10 min), so the 7th
    # failure (60 min later) spends it. The old code gave up after 8 tries in 94.5 s.
    assert len(rx.hits) == 7
    [letter] = await list_dead(redis)
    assert letter.reason == "retry budget 60m spent (7 attempts over 60m): HTTP 503: maintenance"
    assert letter.attempts == 7
    retries = [e for e in logs if e["event"] == "delivery failed, will retry"]
    assert [e["attempt"] for e in retries] == [1, 2, 3, 4, 5, 6]
    # the log names the real next try (the clock at the failure + the delay), never a promise
    # beyond the budget; T0 is 2027-01-15T08:00:00Z
    assert [e["retry_at"][:19] for e in retries] == [
        f"2027-01-15T{h:02d}:{m:02d}:00"
        for h, m in ((8, 10), (8, 20), (8, 30), (8, 40), (8, 50), (9, 0))
    ]
    assert all(e["retry_in_s"] <= 0.05 for e in retries)
    [gave_up] = [e for e in logs if e["event"] == "alert dead-lettered"]
    assert gave_up["reason"].startswith("retry budget 60m spent")


async def test_the_budget_survives_a_restart(redis: aioredis.Redis, redis_url: str) -> None:
    """The first failure's time lives in Redis with the attempt count: a daemon restarted in
    the middle of an outage does not start a fresh hour."""
    clock = Clock()

    async def down(_n: int, _r: web.Request) -> web.Response:
        clock.t += 1500.0  # 25 minutes per try
        return web.Response(status=503)

    rx = await Receiver(responder=down).start()
    hook = {"type": "webhook", "url": rx.url, "retry_base_s": 0.01, "retry_max_s": 0.02}
    cfg = make_config({"ops": hook}, redis_url)
    first = Dispatcher(redis, cfg, consumer="t1", clock=clock)
    await first.start()
    try:
        await enqueue(redis, alert(1), ["ops"])
        await rx.wait_for(2, status=503)
    finally:
        await first.stop()
    second = Dispatcher(redis, cfg, consumer="t1", clock=clock)
    await second.start()
    try:

        async def dead() -> bool:
            return await redis.xlen(keys.DEAD) == 1

        await eventually(dead, "dead-lettered by the restarted daemon")
    finally:
        await second.stop()
        await rx.stop()
    # failures at +25, +50, +75 min...: the budget (from +25) is spent at the 4th (+100 min),
    # counted across both daemons
    assert len(rx.hits) == 4
    [letter] = await list_dead(redis)
    assert letter.attempts == 4
