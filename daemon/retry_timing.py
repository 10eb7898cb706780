"""How long to wait before trying again: one Retry-After parser and one equal-jitter backoff,
used by the upstream client (sources/) and by every notifier (notify/).

Both return finite, bounded seconds only. A receiver or an upstream is outside our control:
`Retry-After: nan` once left a channel's retry instant at NaN, which never came due, so
anything that is not a finite number or an HTTP-date is "no advice" (None), negative waits
are 0 and huge ones are capped. Nothing here sleeps or reads a clock it was not given.
"""

from __future__ import annotations

import math
import random
import time
from email.utils import parsedate_to_datetime

# A peer that asks for more than this is misconfigured or hostile; waiting a day on one header
# would silently stop the daemon.
MAX_WAIT_S = 3600.0

_SHARED_RNG = random.Random()


def parse_retry_after(
    value: str | None, *, now_wall: float | None = None, cap: float = MAX_WAIT_S
) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP-date (RFC 9110).

    None when the value gives no usable advice (empty, garbage, nan, inf, a date without a
    zone); negative and past dates give 0; anything above `cap` gives `cap`."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None or when.tzinfo is None:
            return None  # RFC 9110 dates are GMT; a naive one is not an HTTP-date
        now_wall = time.time() if now_wall is None else now_wall
        seconds = when.timestamp() - now_wall
    return bounded_wait(seconds, cap)


def bounded_wait(seconds: float, cap: float = MAX_WAIT_S) -> float | None:
    """A wait from outside (a header, a JSON body) as finite seconds in [0, cap]; None if not
    a number at all."""
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), cap)


def equal_jitter(
    attempt: int, base_s: float, max_s: float, rng: random.Random | None = None
) -> float:
    """Exponential backoff with "equal jitter" for the `attempt`-th consecutive failure
    (1-based): uniform in [step/2, step] with step = min(max_s, base_s * 2**(attempt-1)).

    Half the step is certain, so the wait really grows (a full-jitter draw can be ~0 and retry
    hot); the other half spreads peers that failed together. The exponent is clamped so a long
    outage cannot overflow the float."""
    step = min(max_s, base_s * 2.0 ** min(max(0, attempt - 1), 62))
    return step / 2 + (rng or _SHARED_RNG).uniform(0, step / 2)
