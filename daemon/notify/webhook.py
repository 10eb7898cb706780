"""Generic JSON webhook, signed per Standard Webhooks when a secret is configured.

Body: the AlertEvent of design.md for a single alert (the contract); an AlertGroup (see
render.py) when the channel groups several. `webhook-id` is the alert id (or the group id),
so a redelivery after a crash carries the same id and a receiver can drop the repeat.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook

from gex_alertd import redaction
from gex_alertd.config import WebhookChannel
from gex_alertd.model import AlertEvent
from gex_alertd.notify.base import DeliveryOutcome, Notifier, permanent
from gex_alertd.notify.http import HttpPoster
from gex_alertd.notify.render import webhook_body

USER_AGENT = "gex-alertd (+https://github.com/flashalpha)"


class WebhookNotifier(Notifier):
    def __init__(self, name: str, cfg: WebhookChannel) -> None:
        super().__init__(name)
        self.cfg = cfg
        redaction.register(cfg.url)
        redaction.register(cfg.secret)
        self._signer: Webhook | None = None
        self._signer_error: str | None = None
        if cfg.secret:
            try:
                self._signer = Webhook(cfg.secret)
            except Exception as exc:  # a malformed secret must not crash the dispatcher
                self._signer_error = f"invalid signing secret: {exc.__class__.__name__}"
        self._http = HttpPoster(cfg.timeout_s)

    def headers(self, msg_id: str, body: bytes, now: datetime | None = None) -> dict[str, str]:
        headers = {"User-Agent": USER_AGENT, **self.cfg.headers, "Content-Type": "application/json"}
        if self._signer is not None:
            now = now or datetime.now(UTC)
            headers["webhook-id"] = msg_id
            headers["webhook-timestamp"] = str(int(now.timestamp()))
            headers["webhook-signature"] = self._signer.sign(msg_id, now, body.decode())
        else:
            headers["webhook-id"] = msg_id  # harmless without a secret, and helps dedup
        return headers

    async def send(self, alerts: Sequence[AlertEvent]) -> DeliveryOutcome:
        if self._signer_error:
            return permanent(self._signer_error)
        msg_id, body = webhook_body(alerts)
        return await self._http.post(self.cfg.url, body, self.headers(msg_id, body))

    async def aclose(self) -> None:
        await self._http.aclose()
