"""One Notifier interface and the typed outcome of one delivery attempt.

Every integration answers the same question with the same three values, so the dispatcher's
retry/dead-letter logic never needs to know which transport it is driving:
`Ok`, `Retry(after, reason)` (transient: try again, `after` from Retry-After when the receiver
said so) or `Permanent(reason)` (a 4xx that will never succeed, a bad address, ...).
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

import msgspec

from gex_alertd import redaction
from gex_alertd.model import AlertEvent

SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}


class Ok(msgspec.Struct, frozen=True, tag="ok"):
    detail: str = ""


class Retry(msgspec.Struct, frozen=True, tag="retry"):
    reason: str
    after: float | None = None  # seconds the receiver asked us to wait (Retry-After)
    # 429: the receiver works and asks us to slow down. Such answers do not use up attempts
    # (a busy Slack workspace must not dead-letter alerts); the channel just waits.
    throttled: bool = False


class Permanent(msgspec.Struct, frozen=True, tag="permanent"):
    reason: str


DeliveryOutcome = Ok | Retry | Permanent


def retry(reason: str, after: float | None = None, *, throttled: bool = False) -> Retry:
    return Retry(redaction.redact(reason), after, throttled)


def permanent(reason: str) -> Permanent:
    return Permanent(redaction.redact(reason))


def describe_exc(exc: BaseException) -> str:
    """An exception as one redacted line; aiohttp errors embed the URL, which may be a secret."""
    text = str(exc) or exc.__class__.__name__
    return redaction.redact(f"{exc.__class__.__name__}: {text}")


def parse_retry_after(value: str | None, *, cap: float = 3600.0) -> float | None:
    """Retry-After as seconds (delta-seconds or an HTTP date), capped so a typo cannot stall us."""
    if not value:
        return None
    value = value.strip()
    try:
        secs = float(value)
    except ValueError:
        from datetime import UTC, datetime
        from email.utils import parsedate_to_datetime

        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        secs = (when - datetime.now(UTC)).total_seconds()
    return min(max(secs, 0.0), cap)


def classify_http(status: int, body: str, retry_after: str | None) -> DeliveryOutcome:
    """Standard mapping of an HTTP answer: 2xx ok; 408/429/5xx retry; other 4xx permanent."""
    if 200 <= status < 300:
        return Ok(f"HTTP {status}")
    snippet = body.strip().replace("\n", " ")[:200]
    reason = f"HTTP {status}" + (f": {snippet}" if snippet else "")
    if status in (408, 425, 429) or status >= 500:
        return retry(reason, parse_retry_after(retry_after), throttled=status == 429)
    return permanent(reason)


class Notifier(abc.ABC):
    """Delivers one alert, or a group of alerts as one message, to one channel."""

    def __init__(self, name: str) -> None:
        self.name = name

    @abc.abstractmethod
    async def send(self, alerts: Sequence[AlertEvent]) -> DeliveryOutcome:
        """Send `alerts` (one, or several grouped into one message). Never raises for
        transport problems: they become Retry or Permanent with a redacted reason."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release sessions/connections."""
