"""Microsoft Teams through a workflow webhook (Power Automate, "post to a channel when a
webhook request is received"): one Adaptive Card per message.

The workflow takes `{"type": "message", "attachments": [{"contentType":
"application/vnd.microsoft.card.adaptive", "content": <card>}]}` and answers 202 Accepted (200
from some tenants); a 429 carries Retry-After; a 400 means the card was refused (permanent).
The card (schema 1.4, what Teams renders) has, per alert, a headline coloured by severity
(`attention` critical, `warning` warning, `accent` info, `good` RESOLVED), the summary, the
levels line and a FactSet of the numbers. Teams refuses cards over ~28 KB: a group shows at
most 15 alerts and counts the rest. Workflow URLs carry their signature in the query (`sig=`),
so the URL is a secret and never logged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from gex_alertd import redaction
from gex_alertd.model import AlertEvent
from gex_alertd.notify.base import ChannelType
from gex_alertd.notify.chat_webhook import ChatChannel, ChatNotifier
from gex_alertd.notify.render import (
    context_line,
    group_title,
    headline,
    key_numbers,
    levels_line,
    title,
    worst_severity,
)

MAX_ALERTS = 15
CARD_COLOR = {"info": "accent", "warning": "warning", "critical": "attention"}


class TeamsChannel(ChatChannel, tag="teams", kw_only=True):
    pass


def _color(a: AlertEvent) -> str:
    return "good" if a.resolved else CARD_COLOR.get(a.severity, "default")


def _alert_items(a: AlertEvent, *, separator: bool) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = [
        {
            "type": "TextBlock",
            "text": f"{headline(a)} · {title(a)}",
            "weight": "bolder",
            "size": "medium",
            "color": _color(a),
            "wrap": True,
            "separator": separator,
        },
        {"type": "TextBlock", "text": a.summary, "wrap": True},
    ]
    levels = levels_line(a)
    if levels:
        items.append({"type": "TextBlock", "text": f"levels: {levels}", "wrap": True})
    facts = [{"title": k, "value": v} for k, v in key_numbers(a)]
    if facts:
        items.append({"type": "FactSet", "facts": facts})
    items.append(
        {
            "type": "TextBlock",
            "text": context_line(a),
            "isSubtle": True,
            "size": "small",
            "wrap": True,
        }
    )
    return items


def adaptive_card(alerts: Sequence[AlertEvent]) -> dict[str, Any]:
    body: list[dict[str, Any]] = []
    if len(alerts) > 1:
        body.append(
            {
                "type": "TextBlock",
                "text": group_title(alerts),
                "weight": "bolder",
                "size": "large",
                "color": CARD_COLOR.get(worst_severity(alerts), "default"),
                "wrap": True,
            }
        )
    for i, a in enumerate(alerts[:MAX_ALERTS]):
        body += _alert_items(a, separator=i > 0 or len(alerts) > 1)
    if len(alerts) > MAX_ALERTS:
        more = f"+{len(alerts) - MAX_ALERTS} more alerts not shown"
        body.append({"type": "TextBlock", "text": more, "isSubtle": True, "wrap": True})
    return {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "msteams": {"width": "Full"},
        "body": body,
    }


def teams_payload(alerts: Sequence[AlertEvent]) -> dict[str, Any]:
    """The message a Teams workflow webhook takes: one Adaptive Card attachment."""
    return {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": None,
                "content": adaptive_card(alerts),
            }
        ],
    }


class TeamsNotifier(ChatNotifier[TeamsChannel]):
    def __init__(self, name: str, cfg: TeamsChannel) -> None:
        super().__init__(name, cfg)
        redaction.register(urlsplit(cfg.webhook_url).query)  # the workflow's `sig=` lives there

    def payload(self, alerts: Sequence[AlertEvent]) -> dict[str, Any]:
        return teams_payload(alerts)


CHANNEL = ChannelType("teams", TeamsChannel, TeamsNotifier)
