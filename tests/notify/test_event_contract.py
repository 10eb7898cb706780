"""The alert event as a webhook receiver gets it is what design.md ("Alert event", contract)
and the README promise: the README's example body has the same fields, of the same JSON types,
as the body a real aiohttp receiver gets for an alert a real rule made from decoded Flow GEX
bodies and the dispatcher delivered from the outbox; the grouped body is the one the README
describes."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import msgspec
import redis.asyncio as aioredis

from gex_alertd.model import AlertEvent, decode_flow_gex
from gex_alertd.notify.dispatch import Dispatcher
from tests.notify.support import SECRET, Receiver, enqueue, enqueue_together, make_config
from tests.rules.helpers import make_rule, run
from tests.support.upstream import flow_gex_body
from tests.support.wait import eventually

ROOT = Path(__file__).resolve().parents[2]
# design.md: "always the regime, flip distance, call wall and put wall"
LEVELS = {"regime", "flip_distance_pct", "call_wall", "put_wall"}


def readme_example() -> dict[str, Any]:
    text = (ROOT / "README.md").read_text()
    section = text.split("\n### The alert event (webhook body)\n", 1)[1].split("\n### ", 1)[0]
    (block,) = re.findall(r"```json\n(.*?)```", section, re.S)
    example = json.loads(block)
    assert isinstance(example, dict)
    return example


def flip_cross_event(symbol: str = "SPY") -> AlertEvent:
    """The README example's alert, made as the daemon makes it: served bodies decoded, the
    rule run by the engine."""
    snaps = [
        decode_flow_gex(
            msgspec.json.encode(flow_gex_body(symbol, as_of=at, spot=spot, flip=flip)),
            symbol=symbol,
            aggregated=True,
        )
        for at, spot, flip in (
            ("2026-05-11T14:00:00.000Z", 594.2, 595.0),
            ("2026-05-11T14:00:15.000Z", 596.1, 595.3),
        )
    ]
    rule = make_rule(type="flip_cross", name="spy-flip", band_pct=0.05, channels=["ops"])
    [(_, event)] = run(rule, snaps)
    return event


def json_kind(value: Any) -> str:
    return {bool: "boolean", int: "number", float: "number", str: "string"}.get(
        type(value), "null" if value is None else type(value).__name__
    )


def hook(url: str, **kw: object) -> dict[str, object]:
    return {"type": "webhook", "url": url, "secret": SECRET, "retry_base_s": 0.05, **kw}


async def _delivered(redis: aioredis.Redis, redis_url: str, events: list[AlertEvent], **ch: Any):
    rx = await Receiver(secret=SECRET).start()
    d = Dispatcher(redis, make_config({"ops": hook(rx.url, **ch)}, redis_url), consumer="t1")
    await d.start()
    try:
        if len(events) == 1:
            await enqueue(redis, events[0], ["ops"], poke=[d])
        else:
            await enqueue_together(redis, events, ["ops"], poke=[d])
        await rx.wait_for(1)

        async def acked() -> bool:
            return (await d.health())["ops"]["pending"] == 0

        await eventually(acked, "ops acked every entry")
        return rx.hits
    finally:
        await d.stop()
        await rx.stop()


def _same_shape(got: dict[str, Any], example: dict[str, Any]) -> None:
    assert list(got) == list(example), "the README example's fields, in the order sent"
    kinds = {k: json_kind(v) for k, v in got.items() if k != "details"}
    assert kinds == {k: json_kind(v) for k, v in example.items() if k != "details"}
    assert {k: json_kind(v) for k, v in got["details"].items()} == {
        k: json_kind(v) for k, v in example["details"].items()
    }


async def test_the_readme_example_is_what_a_receiver_gets(
    redis: aioredis.Redis, redis_url: str
) -> None:
    example = readme_example()
    event = flip_cross_event()
    [hit] = await _delivered(redis, redis_url, [event])
    body = json.loads(hit.body)
    _same_shape(body, example)
    # the fields design.md names, and the ones the README shows as they are
    assert set(body) == set(AlertEvent.__struct_fields__)
    assert LEVELS <= set(body["details"])
    for key in ("id", "rule", "type", "symbol", "expiry", "as_of", "fired_at", "summary"):
        assert body[key] == example[key], key  # deterministic: the same alert, the same id
    assert body["status"] == "firing" and body["severity"] == "warning"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", body["as_of"])
    # signed per Standard Webhooks; the webhook-id is the alert id
    assert hit.verified is True
    assert hit.headers["webhook-id"] == body["id"]
    assert {"webhook-timestamp", "webhook-signature"} <= set(hit.headers)


async def test_a_group_body_is_the_one_the_readme_describes(
    redis: aioredis.Redis, redis_url: str
) -> None:
    example = readme_example()
    events = [flip_cross_event("SPY"), flip_cross_event("QQQ")]
    [hit] = await _delivered(redis, redis_url, events, group_wait="300ms")
    body = json.loads(hit.body)
    assert list(body) == ["id", "type", "count", "severity", "summary", "alerts"]
    assert body["type"] == "group" and body["count"] == 2 and body["severity"] == "warning"
    assert hit.headers["webhook-id"] == body["id"] and hit.verified is True
    for alert in body["alerts"]:
        _same_shape(alert, example)
    assert sorted(a["symbol"] for a in body["alerts"]) == ["QQQ", "SPY"]
