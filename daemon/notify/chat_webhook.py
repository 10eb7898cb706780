"""What the chat channels share (Slack, Discord, Teams): one `webhook_url` that is a secret, one
JSON message per delivery POSTed to it, and the receiver's answer classified by notify/http.py.

A chat channel module keeps what is its own: its config struct (a `ChatChannel` subclass with
its `tag` and defaults), its renderer (`payload`) and what its receiver does differently
(`content_type`, a per-URL send budget, a wait in a 429's body). It must never build its own
HTTP session (notify/http.py's HttpNotifier holds it) or register the URL itself: the URL is
registered for redaction here, before any request can carry it into an error text.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, TypeVar

import msgspec

from gex_alertd import redaction
from gex_alertd.model import AlertEvent
from gex_alertd.notify.base import DeliveryOutcome
from gex_alertd.notify.channel import HttpChannel, Problem, url_problems
from gex_alertd.notify.http import HttpNotifier

_encoder = msgspec.json.Encoder()


class ChatChannel(HttpChannel, kw_only=True):
    webhook_url: str

    def problems(self) -> list[Problem]:
        return super().problems() + url_problems("webhook_url", self.webhook_url)


W = TypeVar("W", bound=ChatChannel)


class ChatNotifier(HttpNotifier[W]):
    """POSTs `payload(alerts)` as JSON to the channel's webhook URL."""

    content_type: ClassVar[str] = "application/json"
    # True for receivers that limit per webhook URL (Slack, Discord): channels sharing a URL
    # share one send budget, keyed by the channel type and the URL
    budget_per_url: ClassVar[bool] = False
    # how long a 429's JSON body asks us to wait (Discord), when the receiver says so there
    body_wait: ClassVar[Callable[[str], float | None] | None] = None

    def __init__(self, name: str, cfg: W) -> None:
        redaction.register(cfg.webhook_url)
        # read through the class: a function stored on it is not bound to the instance
        super().__init__(name, cfg, cfg.webhook_url, wait_from_body=type(self).body_wait)

    @property
    def rate_key(self) -> str:
        if self.budget_per_url:
            return f"{self.cfg.__struct_config__.tag}:{self.cfg.webhook_url}"
        return super().rate_key

    @abc.abstractmethod
    def payload(self, alerts: Sequence[AlertEvent]) -> dict[str, Any]:
        """The channel's JSON message for `alerts` (one, or a group)."""

    async def send(self, alerts: Sequence[AlertEvent]) -> DeliveryOutcome:
        body = _encoder.encode(self.payload(alerts))
        return await self.post(body, {"Content-Type": self.content_type})
