"""Slack incoming webhook with a Block Kit message.

aiohttp rather than slack_sdk's AsyncWebhookClient: we need the status and Retry-After of every
answer mapped onto our Retry/Permanent outcome, a per-notifier session with our timeout, and the
same redaction path as the webhook notifier; the SDK would add a session per client and its own
retry handlers on top of ours. Slack answers 200 `ok`, 429 with Retry-After when rate limited,
4xx with a reason (`invalid_payload`, `channel_not_found`, ...) that will not change on retry.
Rate: Slack allows about one message per second per webhook; the dispatcher enforces it with a
token bucket keyed by the webhook URL (`rate_key`), so two channels sharing a URL share it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gex_alertd.model import AlertEvent
from gex_alertd.notify.base import ChannelType
from gex_alertd.notify.chat_webhook import ChatChannel, ChatNotifier
from gex_alertd.notify.render import (
    RESOLVED_ICON,
    RESOLVED_WORD,
    SEVERITY_ICON,
    color_of,
    context_line,
    group_title,
    key_numbers,
    levels_line,
    subject,
    title,
    worst_severity,
)


class SlackChannel(ChatChannel, tag="slack", kw_only=True):
    rate_per_s: float | None = 1.0


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack_blocks(a: AlertEvent) -> list[dict[str, Any]]:
    fields = [
        {"type": "mrkdwn", "text": f"*{_slack_escape(k)}*\n{_slack_escape(v)}"}
        for k, v in key_numbers(a)
    ][:10]  # Slack allows at most 10 fields per section
    icon = RESOLVED_ICON if a.resolved else SEVERITY_ICON.get(a.severity, "")
    state = f"{RESOLVED_WORD}, was {a.severity}" if a.resolved else a.severity
    blocks: list[dict[str, Any]] = [
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": f"{icon} *{_slack_escape(title(a))}* ({state})\n{_slack_escape(a.summary)}",
            },
        }
    ]
    if fields:
        blocks.append({"type": "section", "fields": fields})
    # the levels go into the context block, not a block of their own: a message holds ~50
    # blocks, and 20 alerts x 3 blocks is what fits
    context = [{"type": "mrkdwn", "text": _slack_escape(context_line(a))}]
    levels = levels_line(a)
    if levels:
        context.insert(0, {"type": "mrkdwn", "text": f"*levels*: {_slack_escape(levels)}"})
    blocks.append({"type": "context", "elements": context})
    return blocks


def slack_payload(alerts: Sequence[AlertEvent]) -> dict[str, Any]:
    """Block Kit inside a coloured attachment (the only way to get a severity bar in Slack)."""
    sev = worst_severity(alerts)
    text = subject(alerts, limit=150)  # notification fallback
    attachments = [
        {"color": color_of(a), "blocks": _slack_blocks(a)}
        for a in alerts[:20]  # a message holds at most ~50 blocks; 20 alerts x 3 fits
    ]
    out: dict[str, Any] = {"text": text, "attachments": attachments}
    if len(alerts) > 1:
        more = f" (+{len(alerts) - 20} more)" if len(alerts) > 20 else ""
        out["blocks"] = [
            {"type": "header", "text": {"type": "plain_text", "text": group_title(alerts)[:150]}},
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": f"worst severity: {sev}{more}"}],
            },
        ]
    return out


class SlackNotifier(ChatNotifier[SlackChannel]):
    content_type = "application/json; charset=utf-8"
    budget_per_url = True  # Slack limits per webhook, not per channel name

    def payload(self, alerts: Sequence[AlertEvent]) -> dict[str, Any]:
        return slack_payload(alerts)


CHANNEL = ChannelType("slack", SlackChannel, SlackNotifier)
