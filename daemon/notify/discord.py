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

from gex_alertd import redaction
from gex_alertd.model import AlertEvent
from gex_alertd.notify.base import ChannelType, DeliveryOutcome, Notifier
from gex_alertd.notify.channel import HttpChannel, Problem, url_problems
from gex_alertd.notify.http import HttpPoster
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
from gex_alertd.urls import host_port

MAX_EMBEDS = 10
MAX_TOTAL = 6000  # characters across a message's embeds
_encoder = msgspec.json.Encoder()


class DiscordChannel(HttpChannel, tag="discord", kw_only=True):
    webhook_url: str
    rate_per_s: float | None = 0.5

    def problems(self) -> list[Problem]:
        return super().problems() + url_problems("webhook_url", self.webhook_url)


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
        body = msgspec.json.decode(text)
    except msgspec.DecodeError:
        return None
    value = body.get("retry_after") if isinstance(body, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return bounded_wait(float(value))


class DiscordNotifier(Notifier[DiscordChannel]):
    def __init__(self, name: str, cfg: DiscordChannel) -> None:
        super().__init__(name, cfg)
        redaction.register(cfg.webhook_url)
        self._http = HttpPoster(
            cfg.timeout_s, on_redirect=cfg.on_redirect, wait_from_body=wait_from_body
        )

    @property
    def rate_key(self) -> str:
        return f"discord:{self.cfg.webhook_url}"  # Discord limits per webhook

    def probe_target(self) -> tuple[str, int] | None:
        return host_port(self.cfg.webhook_url)

    async def send(self, alerts: Sequence[AlertEvent]) -> DeliveryOutcome:
        body = _encoder.encode(discord_payload(alerts))
        headers = {"Content-Type": "application/json"}
        return await self._http.post(self.cfg.webhook_url, body, headers)

    async def aclose(self) -> None:
        await self._http.aclose()


CHANNEL = ChannelType("discord", DiscordChannel, DiscordNotifier)
