"""Discord incoming webhook: one embed per alert, coloured by severity (RESOLVED in green).

Discord answers 204 (or 200) when it accepted the message, 429 with a JSON body
`{"retry_after": <seconds, float>, "global": bool, "message": ...}` when rate limited (the
body's value is exact; the `Retry-After` header is rounded), 404 once the webhook was deleted.
Limits it enforces and this renderer keeps to: 10 embeds per message, title 256 characters,
description 4096, 25 fields of 256/1024, 6000 characters across a message's embeds. Mentions
are disabled (`allowed_mentions`), so an alert text can never ping `@everyone`.
Rate: Discord allows about 30 messages a minute per webhook; the default budget is one every
two seconds, keyed by the webhook URL (`rate_key`) so two channels on one URL share it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from gex_alertd.model import AlertEvent, decode_json
from gex_alertd.notify.base import ChannelType
from gex_alertd.notify.chat_webhook import ChatChannel, ChatNotifier
from gex_alertd.notify.render import (
    color_of,
    context_line,
    group_title,
    headline,
    key_numbers,
    levels_line,
    subject,
    title,
)
from gex_alertd.retry_timing import bounded_wait

MAX_EMBEDS = 10
MAX_TOTAL = 6000  # characters across a message's embeds


class DiscordChannel(ChatChannel, tag="discord", kw_only=True):
    rate_per_s: float | None = 0.5


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _embed(a: AlertEvent) -> dict[str, Any]:
    levels = levels_line(a)
    description = a.summary + (f"\nlevels: {levels}" if levels else "")
    return {
        "title": _cut(f"{headline(a)} · {title(a)}", 256),
        "description": _cut(description, 1000),
        "color": int(color_of(a).lstrip("#"), 16),
        "fields": [
            {"name": _cut(k, 256), "value": _cut(v, 1024), "inline": True}
            for k, v in key_numbers(a)
        ][:25],
        "footer": {"text": _cut(context_line(a), 300)},
        "timestamp": a.fired_at,
    }


def discord_payload(alerts: Sequence[AlertEvent]) -> dict[str, Any]:
    """The webhook body: a plain-text line (notifications show it) and the embeds; alerts past
    10, or past the 6000-character budget, are counted in the text instead."""
    embeds: list[dict[str, Any]] = []
    used = 0
    for a in alerts[:MAX_EMBEDS]:
        e = _embed(a)
        size = len(e["title"]) + len(e["description"]) + len(e["footer"]["text"])
        size += sum(len(f["name"]) + len(f["value"]) for f in e["fields"])
        if embeds and used + size > MAX_TOTAL:
            break
        embeds.append(e)
        used += size
    text = subject(alerts, limit=200) if len(alerts) == 1 else group_title(alerts)
    if len(embeds) < len(alerts):
        text += f" (+{len(alerts) - len(embeds)} more not shown)"
    return {"content": _cut(text, 2000), "embeds": embeds, "allowed_mentions": {"parse": []}}


def wait_from_body(text: str) -> float | None:
    """`retry_after` (seconds) from a 429's JSON body, bounded like any wait from outside."""
    try:
        body = decode_json(text)
    except msgspec.DecodeError:
        return None
    value = body.get("retry_after") if isinstance(body, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return bounded_wait(float(value))


class DiscordNotifier(ChatNotifier[DiscordChannel]):
    budget_per_url = True  # Discord limits per webhook
    body_wait = wait_from_body

    def payload(self, alerts: Sequence[AlertEvent]) -> dict[str, Any]:
        return discord_payload(alerts)


CHANNEL = ChannelType("discord", DiscordChannel, DiscordNotifier)
