"""The discord channel against a real aiohttp receiver that answers as Discord does."""

from __future__ import annotations

import msgspec
import pytest
import redis.asyncio as aioredis
from aiohttp import web

from gex_alertd import config as config_mod
from gex_alertd.notify.base import Ok, Permanent, Retry
from gex_alertd.notify.discord import DiscordChannel, DiscordNotifier, discord_payload
from gex_alertd.notify.dispatch import Dispatcher
from gex_alertd.notify.render import SEVERITY_COLOR
from tests.notify.support import Receiver, alert, enqueue, make_config


def no_content(_n: int, _r: web.Request) -> web.Response:
    return web.Response(status=204)


async def accepted(n: int, r: web.Request) -> web.Response:
    return no_content(n, r)


def rate_limited(retry_after: float) -> web.Response:
    body = {"message": "You are being rate limited.", "retry_after": retry_after, "global": False}
    # the header is rounded up to whole seconds; the body is exact
    return web.json_response(body, status=429, headers={"Retry-After": "30"})


async def test_one_embed_per_alert_coloured_and_without_mentions() -> None:
    rx = await Receiver(responder=accepted, path="/api/webhooks/1/tok").start()
    n = DiscordNotifier("chat", DiscordChannel(webhook_url=rx.url))
    try:
        a = alert(1, severity="critical", summary_extra="@everyone")
        assert await n.send([a]) == Ok("HTTP 204")
        body = msgspec.json.decode(rx.hits[0].body)
        [embed] = body["embeds"]
        assert embed["color"] == int(SEVERITY_COLOR["critical"].lstrip("#"), 16)
        assert embed["title"] == "CRITICAL · SPY · spy-flip"
        assert embed["description"] == a.summary
        assert {f["name"] for f in embed["fields"]} >= {"direction", "spot", "flip"}
        assert embed["timestamp"] == a.fired_at and a.id in embed["footer"]["text"]
        assert body["allowed_mentions"] == {"parse": []}
        assert body["content"].startswith("[CRITICAL] SPY: ")
    finally:
        await n.aclose()
        await rx.stop()


def test_a_large_group_keeps_to_discords_limits() -> None:
    alerts = [alert(i, f"S{i}") for i in range(14)]
    body = discord_payload(alerts)
    assert len(body["embeds"]) == 10
    assert body["content"] == "14 alerts: S0, S1, S10, S11, S12, S13 +8 (+4 more not shown)"
    total = sum(
        len(e["title"]) + len(e["description"]) + len(e["footer"]["text"])
        + sum(len(f["name"]) + len(f["value"]) for f in e["fields"])
        for e in body["embeds"]
    )  # fmt: skip
    assert total <= 6000


async def test_429_waits_the_retry_after_of_the_json_body() -> None:
    async def limited(_n: int, _r: web.Request) -> web.Response:
        return rate_limited(0.25)

    rx = await Receiver(responder=limited).start()
    n = DiscordNotifier("chat", DiscordChannel(webhook_url=rx.url))
    try:
        outcome = await n.send([alert(1)])
        assert isinstance(outcome, Retry) and outcome.throttled
        assert outcome.after == 0.25  # the body's exact value, not the header's 30 s
    finally:
        await n.aclose()
        await rx.stop()


@pytest.mark.parametrize(
    "body",
    # nested deeper than the parser goes: msgspec's RecursionError left the notifier as it was
    ['{"retry_after": "soon"}', '{"retry_after": 9, "x": ' + "[" * 5_000 + "]" * 5_000 + "}"],
    ids=["not a number", "nested too deeply"],
)
async def test_a_nonsense_retry_after_in_the_body_falls_back_to_the_header(body: str) -> None:
    async def limited(_n: int, _r: web.Request) -> web.Response:
        return web.Response(status=429, text=body, headers={"Retry-After": "2"})

    rx = await Receiver(responder=limited).start()
    n = DiscordNotifier("chat", DiscordChannel(webhook_url=rx.url))
    try:
        outcome = await n.send([alert(1)])
        assert isinstance(outcome, Retry) and outcome.after == 2.0
    finally:
        await n.aclose()
        await rx.stop()


async def test_a_deleted_webhook_is_permanent() -> None:
    async def unknown(_n: int, _r: web.Request) -> web.Response:
        return web.json_response({"message": "Unknown Webhook", "code": 10015}, status=404)

    rx = await Receiver(responder=unknown).start()
    n = DiscordNotifier("chat", DiscordChannel(webhook_url=rx.url))
    try:
        outcome = await n.send([alert(1)])
        assert isinstance(outcome, Permanent) and "Unknown Webhook" in outcome.reason
    finally:
        await n.aclose()
        await rx.stop()


async def test_configured_by_type_and_delivered_after_a_429(
    redis: aioredis.Redis, redis_url: str
) -> None:
    async def limited_once(n: int, _r: web.Request) -> web.Response:
        return rate_limited(0.2) if n == 1 else web.Response(status=204)

    rx = await Receiver(responder=limited_once).start()
    cfg = make_config({"chat": {"type": "discord", "webhook_url": rx.url}}, redis_url)
    assert isinstance(cfg.channels["chat"], DiscordChannel)
    d = Dispatcher(redis, cfg, consumer="t1")
    await d.start()
    try:
        await enqueue(redis, alert(1), ["chat"])
        await enqueue(redis, alert(2), ["chat"])
        await rx.wait_for(2, status=204)
        delivered = [msgspec.json.decode(h.body)["embeds"][0]["footer"]["text"] for h in rx.hits]
        assert alert(1).id in delivered[1] and alert(2).id in delivered[2]
        assert d.workers["chat"].dead == 0
    finally:
        await d.stop()
        await rx.stop()


def test_check_names_a_bad_url() -> None:
    try:
        # not "nope": the loader registers a webhook_url as a secret, and a later test in the same
        # process that expects "nope" in a message found "***" there
        config_mod.parse(
            {
                "channels": {
                    "chat": {"type": "discord", "webhook_url": "discord-hook-without-scheme"}
                }
            }
        )
    except config_mod.ConfigError as exc:
        assert exc.problems == ["channels.chat.webhook_url: expected an http(s) URL"]
    else:
        raise AssertionError("accepted a bad webhook_url")
