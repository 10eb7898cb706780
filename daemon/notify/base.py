"""One Notifier interface and the typed outcome of one delivery attempt.

Every integration answers the same question with the same values, so the delivery policy
(notify/policy.py) never needs to know which transport it is driving:
`Ok`, `Retry(reason, after)` (transient: try again, `after` from Retry-After when the receiver
said so), `Permanent(reason)` (a 4xx that will never succeed, a redirect, a bad address...) or
`Gone(reason)` (410: the endpoint was removed; the channel is disabled, not every alert
dead-lettered one by one).

A channel type is one module: its config struct (a `notify.channel.ChannelBase` subclass), its
renderer, a Notifier subclass declaring what the dispatcher asks of it (`rate_key`,
`probe_target`), and a `CHANNEL` line for notify/registry.py. A channel that POSTs to one URL
builds on notify/http.py's HttpNotifier; a chat channel that takes one JSON message at a
webhook URL on notify/chat_webhook.py, and writes only its renderer.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from typing import Generic, Literal, TypeVar

import msgspec

from gex_alertd import redaction
from gex_alertd.model import AlertEvent
from gex_alertd.notify.channel import ChannelBase
from gex_alertd.retry_timing import parse_retry_after
from gex_alertd.urls import shown

SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}


class Ok(msgspec.Struct, frozen=True, tag="ok"):
    detail: str = ""


class Retry(msgspec.Struct, frozen=True, tag="retry"):
    reason: str
    after: float | None = None  # seconds the receiver asked us to wait (finite, bounded)
    # 429: the receiver works and asks us to slow down. Such answers do not use up attempts
    # or the retry budget (a busy Slack workspace must not dead-letter alerts).
    throttled: bool = False


class Permanent(msgspec.Struct, frozen=True, tag="permanent"):
    reason: str


class Gone(msgspec.Struct, frozen=True, tag="gone"):
    """The receiver says the endpoint no longer exists (HTTP 410)."""

    reason: str


DeliveryOutcome = Ok | Retry | Permanent | Gone
OnRedirect = Literal["dead", "retry"]


def retry(reason: str, after: float | None = None, *, throttled: bool = False) -> Retry:
    return Retry(redaction.redact(reason), after, throttled)


def permanent(reason: str) -> Permanent:
    return Permanent(redaction.redact(reason))


def describe_exc(exc: BaseException) -> str:
    """An exception as one redacted line; aiohttp errors embed the URL, which may be a secret."""
    text = str(exc) or exc.__class__.__name__
    return redaction.redact(f"{exc.__class__.__name__}: {text}")


SNIPPET_CHARS = 200  # of a receiver's answer, in a failure's reason


def classify_http(
    status: int,
    body: str,
    retry_after: str | None,
    *,
    location: str | None = None,
    on_redirect: OnRedirect = "dead",
) -> DeliveryOutcome:
    """Standard mapping of an HTTP answer: 2xx ok; 408/425/429/5xx retry; 3xx a failure that
    names where it pointed (never followed); 410 gone; other 4xx permanent."""
    if 200 <= status < 300:
        return Ok(f"HTTP {status}")
    if 300 <= status < 400:
        where = shown(location) if location else "no Location"
        reason = f"HTTP {status} redirect to {where}; deliveries never follow redirects"
        return retry(reason) if on_redirect == "retry" else permanent(reason)
    # redacted before the cut: cut first, the part of an echoed secret that is kept (an error
    # page quoting the webhook URL's path) no longer matched it and was logged; on a window,
    # so a 64 KB body costs what a short one does
    snippet = redaction.redact(body.strip()[: 4 * SNIPPET_CHARS].replace("\n", " "))
    snippet = snippet[:SNIPPET_CHARS]
    reason = f"HTTP {status}" + (f": {snippet}" if snippet else "")
    if status in (408, 425, 429) or status >= 500:
        return retry(reason, parse_retry_after(retry_after), throttled=status == 429)
    if status == 410:
        return Gone(redaction.redact(reason))
    return permanent(reason)


C = TypeVar("C", bound=ChannelBase)


class Notifier(abc.ABC, Generic[C]):
    """Delivers one alert, or a group of alerts as one message, to one channel."""

    def __init__(self, name: str, cfg: C) -> None:
        self.name = name
        self.cfg = cfg

    @property
    def rate_key(self) -> str:
        """Channels with the same key share one send budget (`rate_per_s`): a channel type
        whose receiver limits per URL (Slack, Discord) returns a key derived from it."""
        return f"channel:{self.name}"

    def probe_target(self) -> tuple[str, int] | None:
        """(host, port) `check --probe` connects to; None when there is nothing to reach."""
        return None

    @abc.abstractmethod
    async def send(self, alerts: Sequence[AlertEvent]) -> DeliveryOutcome:
        """Send `alerts` (one, or several grouped into one message). Never raises for
        transport problems: they become Retry, Permanent or Gone with a redacted reason."""

    async def aclose(self) -> None:
        """Release sessions/connections."""


class ChannelType(msgspec.Struct, Generic[C], frozen=True):
    """A channel type for the registry: its `type:` name, config struct and notifier."""

    name: str
    config: type[C]
    notifier: Callable[[str, C], Notifier[C]]
