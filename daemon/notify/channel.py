"""What every channel's config has: routing, grouping and the delivery policy's knobs.

Each channel module declares its own config struct as a subclass (`WebhookChannel` in
notify/webhook.py, ...) with `tag="<type>"`; the registry builds the `channels:` union from
them. This module must not import the channel modules or the config loader (they import it).
"""

from __future__ import annotations

import re
from typing import Literal

import msgspec

from gex_alertd.rules.duration import Duration
from gex_alertd.urls import header_name_ok, is_http_url

Severity = Literal["info", "warning", "critical"]
Problem = tuple[str, str]


class ChannelBase(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, tag_field="type"):
    min_severity: Severity = "info"
    group_wait: Duration = Duration(0.0)  # hold the first alert this long to batch others
    group_interval: Duration = Duration(0.0)  # then at most one batch per interval
    # Delivery policy (notify/policy.py): failed attempts are retried with backoff for as long
    # as the budget lasts, counted from the first failure; `max_attempts` (none by default)
    # can end it sooner. A 429 waits its Retry-After and uses neither.
    max_retry_duration: Duration = Duration(3600.0)
    max_attempts: int | None = None
    retry_base_s: Duration = Duration(1.0)
    retry_max_s: Duration = Duration(300.0)
    rate_per_s: float | None = None  # per-channel send budget

    def problems(self) -> list[Problem]:
        out = []
        if self.max_attempts is not None and self.max_attempts < 1:
            out.append(("max_attempts", f"must be >= 1, got {self.max_attempts}"))
        if self.rate_per_s is not None and self.rate_per_s <= 0:
            out.append(("rate_per_s", f"must be > 0, got {self.rate_per_s}"))
        if self.max_retry_duration <= 0:
            out.append(("max_retry_duration", "must be > 0"))
        if self.retry_base_s <= 0:
            out.append(("retry_base_s", "must be > 0"))
        if self.retry_max_s < self.retry_base_s:
            out.append(("retry_max_s", "must be >= retry_base_s"))
        return out


class HttpChannel(ChannelBase, kw_only=True):
    """A channel that POSTs to an URL. Deliveries never follow a redirect (a 302 turns a POST
    into a GET elsewhere and the alert is lost while looking delivered): a 3xx is a failure
    naming the Location, dead-lettered unless `on_redirect: retry`."""

    timeout_s: float = 10.0
    on_redirect: Literal["dead", "retry"] = "dead"

    def problems(self) -> list[Problem]:
        out = super().problems()
        if self.timeout_s <= 0:
            out.append(("timeout_s", f"must be > 0, got {self.timeout_s}"))
        return out


def url_problems(field: str, value: str) -> list[Problem]:
    return [] if is_http_url(value) else [(field, "expected an http(s) URL")]


# what aiohttp refuses in a header (C0 controls but tab, and DEL): such a value failed every
# send with a ValueError, `check` saying ok (a YAML block scalar ends a value with a newline)
_HEADER_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def header_problems(field: str, value: str, name: str | None = None) -> list[Problem]:
    """Why a header (`name`, when the config gives it, and `value`) cannot go in a request;
    the value is never quoted (it is often a credential)."""
    if name is not None and not header_name_ok(name):
        return [(field, "not a valid header name (letters, digits and !#$%&'*+-.^_`|~ only)")]
    if _HEADER_CONTROL.search(value):
        return [(field, "holds a control character (a line break?): no request can carry it")]
    return []
