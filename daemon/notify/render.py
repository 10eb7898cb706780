"""What every channel's renderer shares: the facts of an AlertEvent (or a group) as labelled
numbers, the levels line, titles, a subject line, colours and the RESOLVED marking, so every
channel shows the same facts from the same event. Each channel module renders its own message
from these (webhook body, Block Kit, text + HTML mail, console line, embeds, Adaptive Card)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from gex_alertd.model import AlertEvent

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


def group_id(alerts: Sequence[AlertEvent]) -> str:
    digest = hashlib.sha256("\n".join(sorted(a.id for a in alerts)).encode()).hexdigest()
    return f"group-{digest[:24]}"
