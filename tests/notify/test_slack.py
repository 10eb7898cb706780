"""Slack-like receiver: Block Kit payload, 429 + Retry-After honoured, per-webhook rate."""

from __future__ import annotations

import msgspec
import redis.asyncio as aioredis
from aiohttp import web

from gex_alertd.notify.base import Ok, Permanent, Retry
from gex_alertd.notify.dispatch import Dispatcher
from gex_alertd.notify.slack import SlackChannel, SlackNotifier
from tests.notify.support import Receiver, alert, enqueue, make_config

SLACK_PATH = "/services/T0000/B0000/abcdefSECRETxyz"


async def test_429_retry_after_is_honoured_then_delivered(
    redis: aioredis.Redis, redis_url: str
) -> None:
    async def limited_once(n: int, _r: web.Request) -> web.Response:
        if n == 1:
            return web.Response(status=429, text="rate_limited", headers={"Retry-After": "1"})
        return web.Response(text="ok")

    rx = await Receiver(responder=limited_once, path=SLACK_PATH).start()
    cfg = make_config({"desk": {"type": "slack", "webhook_url": rx.url}}, redis_url)
    d = Dispatcher(redis, cfg, consumer="t1")
    await d.start()
    try:
        a = alert(1, severity="critical")
        await enqueue(redis, a, ["desk"])
        await rx.wait_for(1)
        first, second = rx.hits[0], rx.hits[1]
        assert first.status == 429 and second.status == 200
        # the retry came no earlier than Slack asked (lower bound only: never flaky)
        assert second.at - first.at >= 1.0
        assert first.body == second.body
        payload = msgspec.json.decode(second.body)
        assert payload["attachments"][0]["color"] == "#D7263D"
        assert a.summary in payload["attachments"][0]["blocks"][0]["text"]["text"]
        assert len(rx.hits) == 2
    finally:
        await d.stop()
        await rx.stop()


async def test_channels_sharing_a_webhook_share_its_rate(
    redis: aioredis.Redis, redis_url: str
) -> None:
    rx = await Receiver(path=SLACK_PATH).start()
    slack = {"type": "slack", "webhook_url": rx.url, "rate_per_s": 5}
    cfg = make_config({"desk": slack, "desk2": slack}, redis_url)
    d = Dispatcher(redis, cfg, consumer="t1")
    await d.start()
    try:
        for i in range(3):
            await enqueue(redis, alert(i), ["desk", "desk2"])
        await rx.wait_for(6)
        # 5/s, no burst: six sends span at least 1 s (lower bounds only; transit is the slack)
        assert rx.hits[-1].at - rx.hits[0].at >= 0.9
        gaps = [b.at - a.at for a, b in zip(rx.hits, rx.hits[1:], strict=False)]
        assert min(gaps) >= 0.1
    finally:
        await d.stop()
        await rx.stop()


async def test_slack_error_answers() -> None:
    answers = {
        1: web.Response(status=404, text="channel_not_found"),
        2: web.Response(status=500, text="oops"),
        3: web.Response(status=429, headers={"Retry-After": "30"}),
    }

    async def responder(n: int, _r: web.Request) -> web.Response:
        return answers.get(n, web.Response(text="ok"))

    rx = await Receiver(responder=responder, path=SLACK_PATH).start()
    n = SlackNotifier("desk", SlackChannel(webhook_url=rx.url))
    try:
        out = [await n.send([alert(i)]) for i in range(4)]
        assert out[0] == Permanent("HTTP 404: channel_not_found")
        assert isinstance(out[1], Retry) and out[1].after is None
        assert out[2] == Retry("HTTP 429", 30.0, throttled=True)
        assert isinstance(out[3], Ok)
    finally:
        await n.aclose()
        await rx.stop()


async def test_throttling_does_not_use_up_attempts(redis: aioredis.Redis, redis_url: str) -> None:
    async def busy(n: int, _r: web.Request) -> web.Response | None:
        if n <= 4:
            return web.Response(status=429, headers={"Retry-After": "0"})
        return None

    rx = await Receiver(responder=busy, path=SLACK_PATH).start()
    slack = {"type": "slack", "webhook_url": rx.url, "max_attempts": 2, "rate_per_s": 100}
    d = Dispatcher(redis, make_config({"desk": slack}, redis_url), consumer="t1")
    await d.start()
    try:
        await enqueue(redis, alert(1), ["desk"])
        await rx.wait_for(1)
        assert [h.status for h in rx.hits] == [429, 429, 429, 429, 200]
        assert await redis.xlen("gex:dead") == 0
    finally:
        await d.stop()
        await rx.stop()
