"""Renderers: one AlertEvent (or a group of them) as text, HTML, Block Kit, a subject line,
a console line and a webhook body. Every channel shows the same facts from the same event."""

from __future__ import annotations

import hashlib
import html
from collections.abc import Sequence
from typing import Any

import msgspec

from gex_alertd.model import AlertEvent, encode_alert

SEVERITY_COLOR = {"info": "#439FE0", "warning": "#E8A33D", "critical": "#D7263D"}
SEVERITY_ANSI = {"info": "\x1b[36m", "warning": "\x1b[33m", "critical": "\x1b[1;31m"}
ANSI_RESET = "\x1b[0m"
SEVERITY_ICON = {"info": "ℹ️", "warning": "⚠️", "critical": "🚨"}
# a resolved event is shown as such on every channel, whatever its severity
RESOLVED_WORD = "RESOLVED"
RESOLVED_COLOR = "#2EB67D"
RESOLVED_ANSI = "\x1b[32m"
RESOLVED_ICON = "✅"

# Details shown first (the numbers a trader looks for); the rest follow in event order.
_KEY_ORDER = (
    "direction", "spot", "underlying_price", "flip", "previous_flip", "current_flip",
    "distance_pct", "net_gex", "live_net_gex", "previous_net_gex", "value", "threshold",
)  # fmt: skip
_MONEY_KEYS = ("gex",)
_MAX_FIELDS = 8
# the levels every alert carries (rules.levels.details): one line of their own, not fields
LEVEL_KEYS = ("regime", "flip_distance_pct", "call_wall", "put_wall")


def _fmt_num(key: str, value: float) -> str:
    if any(k in key for k in _MONEY_KEYS):
        sign = "-" if value < 0 else ""
        v = abs(value)
        for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
            if v >= scale:
                return f"{sign}${v / scale:.2f}{unit}"
        return f"{sign}${v:,.0f}"
    if key.endswith("_pct"):
        return f"{value:.2f}%"
    if float(value).is_integer() and abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:,.2f}"


def _fmt_value(key: str, value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value).lower()
    if isinstance(value, int | float):
        return _fmt_num(key, float(value))
    if isinstance(value, list):
        return f"{len(value)} item(s)"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_fmt_value(k, v)}" for k, v in list(value.items())[:4])
    return str(value)


def key_numbers(event: AlertEvent) -> list[tuple[str, str]]:
    """The details as (label, formatted value), the well-known numbers first."""
    details = event.details or {}
    keys = [k for k in _KEY_ORDER if k in details]
    keys += [k for k in details if k not in keys and k not in LEVEL_KEYS]
    return [(k.replace("_", " "), _fmt_value(k, details[k])) for k in keys[:_MAX_FIELDS]]


def levels_line(event: AlertEvent) -> str | None:
    """Where the levels are at the alert's snapshot, in one line; None for an event without
    them (an operator alert, or one stored before they existed)."""
    d = event.details or {}
    if not any(k in d for k in LEVEL_KEYS):
        return None
    dist = d.get("flip_distance_pct")
    flip = "no flip" if dist is None else f"spot {dist:+.2f}% from the flip"
    walls = [
        f"{name} {'n/a' if d.get(key) is None else f'{d[key]:g}'}"
        for key, name in (("call_wall", "call wall"), ("put_wall", "put wall"))
    ]
    return " · ".join([f"{d.get('regime') or 'unknown'} gamma", flip, *walls])


def worst_severity(alerts: Sequence[AlertEvent]) -> str:
    order = ("info", "warning", "critical")
    return max((a.severity for a in alerts), key=lambda s: order.index(s) if s in order else 0)


def headline(event: AlertEvent) -> str:
    """The word that leads an alert: its severity, or RESOLVED (with the severity it had)."""
    if event.resolved:
        return f"{RESOLVED_WORD} ({event.severity})"
    return event.severity.upper()


def color_of(event: AlertEvent) -> str:
    return RESOLVED_COLOR if event.resolved else SEVERITY_COLOR.get(event.severity, "#888888")


def title(event: AlertEvent) -> str:
    exp = f" {event.expiry}" if event.expiry else ""
    return f"{event.symbol}{exp} · {event.rule}"


def group_title(alerts: Sequence[AlertEvent]) -> str:
    if len(alerts) == 1:
        return title(alerts[0])
    symbols = sorted({a.symbol for a in alerts})
    shown = ", ".join(symbols[:6]) + (f" +{len(symbols) - 6}" if len(symbols) > 6 else "")
    return f"{len(alerts)} alerts: {shown}"


def subject(alerts: Sequence[AlertEvent], limit: int = 78) -> str:
    """Short and front-loaded: a phone shows ~40 characters, so severity and symbol come first."""
    # a resolved alert is good news: the subject leads with the worst one still firing
    firing = [a for a in alerts if not a.resolved]
    sev = worst_severity(firing).upper() if firing else RESOLVED_WORD
    if len(alerts) == 1:
        a = alerts[0]
        text = f"[{sev}] {a.symbol}: {a.summary}"
    else:
        rules = sorted({a.rule for a in alerts})
        text = f"[{sev}] {group_title(alerts)} ({', '.join(rules)})"
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def context_line(event: AlertEvent) -> str:
    return f"{event.type} · as of {event.as_of} · fired {event.fired_at} · id {event.id}"


def console_line(event: AlertEvent, *, color: bool) -> str:
    sev = RESOLVED_WORD if event.resolved else event.severity.upper()
    if color:
        ansi = RESOLVED_ANSI if event.resolved else SEVERITY_ANSI.get(event.severity, "")
        sev = f"{ansi}{sev:<8}{ANSI_RESET}"
    else:
        sev = f"{sev:<8}"
    nums = " ".join(f"{k}={v}" for k, v in key_numbers(event)[:4])
    head = f"{event.fired_at} {sev} {event.symbol:<6} {event.rule}:"
    return f"{head} {event.summary}  {nums}  [{event.id}]"


def text_body(alerts: Sequence[AlertEvent]) -> str:
    parts = []
    for a in alerts:
        lines = [f"{headline(a)}  {title(a)}", a.summary, ""]
        levels = levels_line(a)
        if levels:
            lines += [f"  levels: {levels}", ""]
        lines += [f"  {k:<18} {v}" for k, v in key_numbers(a)]
        lines += ["", context_line(a)]
        parts.append("\n".join(lines))
    head = f"{group_title(alerts)}\n\n" if len(alerts) > 1 else ""
    return head + ("\n\n" + "-" * 60 + "\n\n").join(parts) + "\n"


def html_body(alerts: Sequence[AlertEvent]) -> str:
    esc = html.escape
    blocks = []
    for a in alerts:
        color = color_of(a)
        rows = "".join(
            f"<tr><td style='color:#666;padding:2px 12px 2px 0'>{esc(k)}</td>"
            f"<td style='font-family:monospace'>{esc(v)}</td></tr>"
            for k, v in key_numbers(a)
        )
        levels = levels_line(a)
        lv = f"<p style='color:#444'><b>levels</b>: {esc(levels)}</p>" if levels else ""
        blocks.append(
            f"<div style='border-left:4px solid {color};padding:4px 12px;margin:12px 0'>"
            f"<div style='font-weight:bold'>{esc(headline(a))} · {esc(title(a))}</div>"
            f"<p>{esc(a.summary)}</p>{lv}<table>{rows}</table>"
            f"<p style='color:#888;font-size:small'>{esc(context_line(a))}</p></div>"
        )
    head = f"<h3>{esc(group_title(alerts))}</h3>" if len(alerts) > 1 else ""
    return f"<html><body>{head}{''.join(blocks)}</body></html>"


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


class AlertGroup(msgspec.Struct, frozen=True):
    """Webhook body for a grouped delivery. A single alert is sent as the bare AlertEvent
    (the contract); a group wraps several, and its id is derived from the member ids so a
    redelivery of the same group carries the same `webhook-id`."""

    id: str
    type: str
    count: int
    severity: str
    summary: str
    alerts: list[AlertEvent]


def group_id(alerts: Sequence[AlertEvent]) -> str:
    digest = hashlib.sha256("\n".join(sorted(a.id for a in alerts)).encode()).hexdigest()
    return f"group-{digest[:24]}"


_encoder = msgspec.json.Encoder()


def webhook_body(alerts: Sequence[AlertEvent]) -> tuple[str, bytes]:
    """(webhook-id, JSON body)."""
    if len(alerts) == 1:
        return alerts[0].id, encode_alert(alerts[0])
    grp = AlertGroup(
        id=group_id(alerts),
        type="group",
        count=len(alerts),
        severity=worst_severity(alerts),
        summary=group_title(alerts),
        alerts=list(alerts),
    )
    return grp.id, _encoder.encode(grp)
