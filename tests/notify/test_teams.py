"""The teams channel against a real aiohttp receiver that answers as a Teams workflow does."""

from __future__ import annotations

import msgspec
import redis.asyncio as aioredis
from aiohttp import web

from gex_alertd import redaction
from gex_alertd.model import RESOLVED
from gex_alertd.notify.base import Ok, Permanent, Retry
from gex_alertd.notify.dispatch import Dispatcher
from gex_alertd.notify.teams import TeamsChannel, TeamsNotifier, teams_payload
from tests.notify.support import Receiver, alert, enqueue, make_config

CARD = "application/vnd.microsoft.card.adaptive"


async def accepted(_n: int, _r: web.Request) -> web.Response:
    return web.Response(status=202)


def card_of(body: bytes) -> dict[str, object]:
    msg = msgspec.json.decode(body)
    assert msg["type"] == "message"
    [attachment] = msg["attachments"]
    assert attachment["contentType"] == CARD
    card: dict[str, object] = attachment["content"]
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.4"
    return card


async def test_an_adaptive_card_per_message() -> None:
    rx = await Receiver(responder=accepted).start()
    n = TeamsNotifier("desk", TeamsChannel(webhook_url=rx.url))
    try:
        a = alert(1, severity="critical")
        assert await n.send([a]) == Ok("HTTP 202")
        body = card_of(rx.hits[0].body)["body"]
        assert isinstance(body, list)
        head, summary = body[0], body[1]
        assert head["text"] == "CRITICAL · SPY · spy-flip" and head["color"] == "attention"
        assert summary["text"] == a.summary
        [facts] = [b for b in body if b["type"] == "FactSet"]
        assert {f["title"] for f in facts["facts"]} >= {"direction", "spot", "flip"}
        assert a.id in body[-1]["text"]
    finally:
        await n.aclose()
        await rx.stop()


def test_resolved_and_groups() -> None:
    r = msgspec.structs.replace(alert(1, severity="critical"), status=RESOLVED)
    body = teams_payload([r])["attachments"][0]["content"]["body"]
    assert body[0]["color"] == "good" and body[0]["text"].startswith("RESOLVED (critical)")
    many = teams_payload([alert(i, f"S{i}") for i in range(20)])["attachments"][0]["content"]
    heads = [b for b in many["body"] if b.get("weight") == "bolder"]
    assert heads[0]["text"].startswith("20 alerts: ") and len(heads) == 1 + 15
    assert many["body"][-1]["text"] == "+5 more alerts not shown"
    assert len(msgspec.json.encode(many)) < 28_000  # Teams refuses larger cards


async def test_429_retries_and_400_is_permanent() -> None:
    async def answers(n: int, _r: web.Request) -> web.Response:
        if n == 1:
            return web.Response(status=429, headers={"Retry-After": "3"})
        return web.Response(status=400, text="Invalid card")

    rx = await Receiver(responder=answers).start()
    n = TeamsNotifier("desk", TeamsChannel(webhook_url=rx.url))
    try:
        assert await n.send([alert(1)]) == Retry("HTTP 429", 3.0, throttled=True)
        assert await n.send([alert(1)]) == Permanent("HTTP 400: Invalid card")
    finally:
        await n.aclose()
        await rx.stop()


async def test_the_workflow_signature_never_reaches_an_error() -> None:
    url = "http://127.0.0.1:9/workflows/abc/triggers/manual/paths/invoke?api-version=1&sig=S1gS1gS1gS1g"
    n = TeamsNotifier("desk", TeamsChannel(webhook_url=url))
    try:
        outcome = await n.send([alert(1)])  # nothing listens on port 9
        assert isinstance(outcome, Retry)
        assert "S1gS1gS1gS1g" not in outcome.reason
        assert "S1gS1gS1gS1g" not in redaction.redact(f"POST {url} failed")
    finally:
        await n.aclose()


async def test_configured_by_type_and_delivered(redis: aioredis.Redis, redis_url: str) -> None:
    rx = await Receiver(responder=accepted).start()
    cfg = make_config({"desk": {"type": "teams", "webhook_url": rx.url}}, redis_url)
    assert isinstance(cfg.channels["desk"], TeamsChannel)
    d = Dispatcher(redis, cfg, consumer="t1")
    await d.start()
    try:
        await enqueue(redis, alert(1), ["desk"])
        await rx.wait_for(1, status=202)
        assert alert(1).id in str(card_of(rx.hits[0].body))
    finally:
        await d.stop()
        await rx.stop()
