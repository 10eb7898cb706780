"""Prometheus Alertmanager: every alert posted to `POST <url>/api/v2/alerts`, so desks that
already route, group, inhibit and silence with Alertmanager get gex-alertd's alerts there.

Mapping (one Alertmanager alert per AlertEvent; a group is one POST of several):
- labels: `alertname` and `rule` (the rule name), `symbol`, `severity`, `type`, and `expiry`
  when the stream has one. Alertmanager identifies an alert by its labels, so a resolved
  event (same rule, symbol, expiry) resolves the firing one; the alert id is not a label for
  that reason (firing and resolved ids differ) but an annotation.
- annotations: `summary` (the one-line summary), `description` (the key numbers and the
  context line, as in the email text), `alert_id`, `as_of`.
- `startsAt`: the triggering snapshot's `as_of`. `endsAt`: the same instant for a `resolved`
  event (Alertmanager accepts start == end and marks it resolved); none for `firing`, so
  Alertmanager resolves one-shot alerts after its own `resolve_timeout`.
- `generatorURL`: `<external_url>/view?symbol=<SYM>[&expiry=..]` (the live page) when the
  channel sets `external_url`; omitted otherwise rather than guess how users reach the ops
  server.

Answers: 200 is Ok; 400 (Alertmanager refused the payload) is permanent; 401/403 permanent;
429/5xx/timeouts retry (the shared HTTP classifier; redirects never followed). Auth:
`basic_auth` or `bearer_token`, both secrets (registered for redaction when the config loads;
the encoded basic credentials here).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

import msgspec

from gex_alertd import redaction
from gex_alertd.model import AlertEvent
from gex_alertd.notify.base import ChannelType, DeliveryOutcome
from gex_alertd.notify.channel import HttpChannel, Problem, header_problems, url_problems
from gex_alertd.notify.http import HttpNotifier
from gex_alertd.notify.render import context_line, key_numbers

API_PATH = "/api/v2/alerts"
MAX_ANNOTATION = 4000  # Alertmanager has no limit; receivers (PagerDuty, Slack) truncate anyway

_encoder = msgspec.json.Encoder()


class BasicAuth(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    username: str
    password: str


class AlertmanagerChannel(HttpChannel, tag="alertmanager", kw_only=True):
    url: str  # Alertmanager's base URL (with its route prefix, if any)
    basic_auth: BasicAuth | None = None
    bearer_token: str | None = None
    external_url: str | None = None  # the ops server as users reach it: generatorURL

    def problems(self) -> list[Problem]:
        out = super().problems() + url_problems("url", self.url)
        if self.basic_auth is not None and self.bearer_token is not None:
            out.append(("bearer_token", "choose one of basic_auth and bearer_token"))
        if self.external_url is not None:
            out += url_problems("external_url", self.external_url)
        if self.bearer_token is not None:
            out += header_problems("bearer_token", self.bearer_token)
        return out


def labels(event: AlertEvent) -> dict[str, str]:
    out = {
        "alertname": event.rule,
        "rule": event.rule,
        "symbol": event.symbol,
        "severity": event.severity,
        "type": event.type,
    }
    if event.expiry:
        out["expiry"] = event.expiry
    return out


def description(event: AlertEvent) -> str:
    lines = [f"{k}: {v}" for k, v in key_numbers(event)]
    lines.append(context_line(event))
    return "\n".join(lines)[:MAX_ANNOTATION]


def generator_url(event: AlertEvent, external_url: str | None) -> str | None:
    """The symbol's live page on the ops server (web/routes.py: `/view?symbol=S[&expiry=D]`)."""
    if not external_url:
        return None
    query = {"symbol": event.symbol, **({"expiry": event.expiry} if event.expiry else {})}
    return f"{external_url.rstrip('/')}/view?{urlencode(query)}"


def alert(event: AlertEvent, external_url: str | None = None) -> dict[str, Any]:
    """One postable Alertmanager alert (API v2 `postableAlert`)."""
    out: dict[str, Any] = {
        "labels": labels(event),
        "annotations": {
            "summary": event.summary[:MAX_ANNOTATION],
            "description": description(event),
            "alert_id": event.id,
            "as_of": event.as_of,
        },
        "startsAt": event.as_of,
    }
    if event.resolved:
        out["endsAt"] = event.as_of
    url = generator_url(event, external_url)
    if url:
        out["generatorURL"] = url
    return out


def payload(alerts: Sequence[AlertEvent], external_url: str | None = None) -> list[Any]:
    return [alert(a, external_url) for a in alerts]


def alerts_url(base: str) -> str:
    """`url` is Alertmanager's base URL (with any route prefix); the API path goes after it."""
    base = base.rstrip("/")
    return base if base.endswith(API_PATH) else base + API_PATH


class AlertmanagerNotifier(HttpNotifier[AlertmanagerChannel]):
    def __init__(self, name: str, cfg: AlertmanagerChannel) -> None:
        super().__init__(name, cfg, alerts_url(cfg.url))
        self.headers = {"Content-Type": "application/json"}
        if cfg.basic_auth is not None:
            pair = f"{cfg.basic_auth.username}:{cfg.basic_auth.password}".encode()
            token = base64.b64encode(pair).decode()
            redaction.register(token)
            self.headers["Authorization"] = f"Basic {token}"
        elif cfg.bearer_token is not None:
            self.headers["Authorization"] = f"Bearer {cfg.bearer_token}"

    @property
    def rate_key(self) -> str:
        return (
            f"alertmanager:{self.target}"  # channels posting to one Alertmanager share one budget
        )

    async def send(self, alerts: Sequence[AlertEvent]) -> DeliveryOutcome:
        body = _encoder.encode(payload(alerts, self.cfg.external_url))
        return await self.post(body, self.headers)


CHANNEL = ChannelType("alertmanager", AlertmanagerChannel, AlertmanagerNotifier)
