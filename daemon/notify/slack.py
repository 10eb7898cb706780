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

import msgspec

from gex_alertd import redaction
from gex_alertd.config import SlackChannel
from gex_alertd.model import AlertEvent
from gex_alertd.notify.base import DeliveryOutcome, Notifier
from gex_alertd.notify.http import HttpPoster
from gex_alertd.notify.render import slack_payload

_encoder = msgspec.json.Encoder()


class SlackNotifier(Notifier):
    def __init__(self, name: str, cfg: SlackChannel) -> None:
        super().__init__(name)
        self.cfg = cfg
        redaction.register(cfg.webhook_url)
        self.rate_key = f"slack:{cfg.webhook_url}"
        self._http = HttpPoster(cfg.timeout_s)

    async def send(self, alerts: Sequence[AlertEvent]) -> DeliveryOutcome:
        body = _encoder.encode(slack_payload(alerts))
        headers = {"Content-Type": "application/json; charset=utf-8"}
        return await self._http.post(self.cfg.webhook_url, body, headers)

    async def aclose(self) -> None:
        await self._http.aclose()
