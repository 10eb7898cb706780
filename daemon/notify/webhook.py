"""Generic JSON webhook, signed per Standard Webhooks when a secret is configured.

Body: the AlertEvent of design.md for a single alert (the contract); an `AlertGroup` when the
channel groups several. `webhook-id` is the alert id (or the group id, derived from the member
ids), so a redelivery after a crash or a retry carries the same id and a receiver can drop the
repeat.

Secret rotation: `secrets: [new, old]` signs every message with each of them and sends the
signatures space-separated in one `webhook-signature` header, as Standard Webhooks specifies,
so a receiver that knows either secret verifies it. `secret:` (one) keeps working.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from datetime import UTC, datetime

import msgspec
from standardwebhooks.webhooks import Webhook

from gex_alertd import redaction
from gex_alertd.model import AlertEvent, encode_alert
from gex_alertd.notify.base import ChannelType, DeliveryOutcome, permanent
from gex_alertd.notify.channel import HttpChannel, Problem, header_problems, url_problems
from gex_alertd.notify.http import HttpNotifier
from gex_alertd.notify.render import group_id, group_title, worst_severity

USER_AGENT = "gex-alertd (+https://github.com/flashalpha)"


class WebhookChannel(HttpChannel, tag="webhook", kw_only=True):
    url: str
    secret: str | None = None
    # rotation: sign with each (new first); a receiver accepts the message with any of them
    secrets: list[str] = msgspec.field(default_factory=list)
    headers: dict[str, str] = msgspec.field(default_factory=dict)

    def signing_secrets(self) -> list[str]:
        return list(self.secrets) if self.secrets else [self.secret] if self.secret else []

    def problems(self) -> list[Problem]:
        out = super().problems() + url_problems("url", self.url)
        if self.secret and self.secrets:
            out.append(("secrets", "give either secret or secrets, not both"))
        for i, s in enumerate(self.signing_secrets()):
            if why := secret_problem(s):
                out.append((f"secrets[{i}]" if self.secrets else "secret", why))
        for name, value in self.headers.items():
            out += header_problems(f"headers.{name}", value, name)
        return out


def secret_problem(secret: str) -> str | None:
    """Why a signing secret is not a Standard Webhooks one (`whsec_` + base64 of the key), or
    None. Never quotes the value. The signer would fail on every alert otherwise."""
    raw = secret.removeprefix("whsec_")
    try:
        key = base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
    except (binascii.Error, ValueError):
        return "not a Standard Webhooks secret: expected whsec_ followed by base64 (not shown)"
    if not key:
        return "empty signing key after whsec_"
    return None


def _signer(secret: str) -> Webhook | None:
    try:
        return Webhook(secret)
    except Exception:  # the library raises several types for a malformed secret
        return None


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


class WebhookNotifier(HttpNotifier[WebhookChannel]):
    def __init__(self, name: str, cfg: WebhookChannel) -> None:
        redaction.register(cfg.url)  # header values: registered by the config loader
        super().__init__(name, cfg, cfg.url)
        self._signers: list[Webhook] = []
        self._signer_error: str | None = None
        for i, secret in enumerate(cfg.signing_secrets()):
            redaction.register(secret)
            signer = _signer(secret)
            if signer is None:  # check refuses it; a malformed secret must not crash us
                self._signer_error = f"invalid signing secret #{i + 1}"
            else:
                self._signers.append(signer)

    def headers(self, msg_id: str, body: bytes, now: datetime | None = None) -> dict[str, str]:
        headers = {"User-Agent": USER_AGENT, **self.cfg.headers, "Content-Type": "application/json"}
        headers["webhook-id"] = msg_id  # also without a secret: it helps a receiver dedup
        if self._signers:
            now = now or datetime.now(UTC)
            headers["webhook-timestamp"] = str(int(now.timestamp()))
            payload = body.decode()
            headers["webhook-signature"] = " ".join(
                s.sign(msg_id, now, payload) for s in self._signers
            )
        return headers

    async def send(self, alerts: Sequence[AlertEvent]) -> DeliveryOutcome:
        if self._signer_error:
            return permanent(self._signer_error)
        msg_id, body = webhook_body(alerts)
        return await self.post(body, self.headers(msg_id, body))


CHANNEL = ChannelType("webhook", WebhookChannel, WebhookNotifier)
