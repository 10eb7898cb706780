"""The key-wide request budget and the Retry-After gate, shared by every request on one API key.

Two mechanisms, one entry point (`KeyLimiter.acquire`):

- **Budget**: GCRA (the generic cell rate algorithm, a token bucket kept as one timestamp).
  Every request reserves the next slot of the theoretical arrival time `tat`; slots are
  `60 / requests_per_min` seconds apart and up to `burst` of them may be taken at once. A
  reservation is made before sleeping, so concurrent waiters are served in arrival order and
  never race for the same slot.
- **Gate**: a monotonic instant before which no request may be sent (a 429's Retry-After, or a
  rate-limit window reported exhausted). Closing it only ever extends it. A waiter re-checks
  the gate after its budget sleep, so a 429 that lands while others are queued holds them too.

Both run on one monotonic clock (`time.monotonic()` unless one is passed in, with the sleep
that goes with it, so tests can move time themselves); the caller converts wall-clock inputs
(an HTTP-date) first.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable

# the one parser and bound, shared with the notifiers (re-exported for the client)
from gex_alertd.retry_timing import MAX_WAIT_S as MAX_WAIT_S
from gex_alertd.retry_timing import parse_retry_after as parse_retry_after


class KeyLimiter:
    def __init__(
        self,
        requests_per_min: float,
        burst: int | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if requests_per_min <= 0:
            raise ValueError(f"requests_per_min must be > 0, got {requests_per_min}")
        if burst is None:
            # about one second's worth of requests, at least one: smooth, yet not serialising
            # a poller that wakes several watch entries on the same tick
            burst = max(1, math.ceil(requests_per_min / 60))
        if burst < 1:
            raise ValueError(f"burst must be >= 1, got {burst}")
        self.interval = 60.0 / requests_per_min
        self.burst = burst
        self._tolerance = (burst - 1) * self.interval
        self._tat = 0.0  # theoretical arrival time of the next request (monotonic)
        self._gate = 0.0  # no request before this instant (monotonic)
        self.now = clock
        self._sleep = sleep

    # --- gate ---------------------------------------------------------------------------------

    @property
    def gate_until(self) -> float:
        return self._gate

    def close_gate(self, seconds: float, *, now: float | None = None) -> float:
        """Hold every request on the key for `seconds` from `now`; returns the gate's end."""
        now = self.now() if now is None else now
        seconds = min(max(0.0, seconds), MAX_WAIT_S)
        self._gate = max(self._gate, now + seconds)
        return self._gate

    # --- budget -------------------------------------------------------------------------------

    def _reserve(self, now: float) -> tuple[float, float]:
        """Take the next slot; return (delay until it may be used, the tat it moved to)."""
        tat = max(self._tat, now)
        delay = tat - self._tolerance - now
        self._tat = tat + self.interval
        return max(0.0, delay), self._tat

    def _refund(self, tat_after: float) -> None:
        # only the latest reservation can be handed back without reordering the others
        if self._tat == tat_after:
            self._tat -= self.interval

    async def acquire(self) -> float:
        """Wait until a request may be sent now; return the seconds spent waiting.

        Between this returning and the request being sent there must be no await, or a gate
        closed meanwhile would be missed.
        """
        start = self.now()
        now = start
        while True:
            if self._gate > now:
                await self._sleep(self._gate - now)
                now = self.now()
                continue
            delay, tat_after = self._reserve(now)
            if delay > 0:
                try:
                    await self._sleep(delay)
                except asyncio.CancelledError:
                    self._refund(tat_after)
                    raise
                now = self.now()
                if self._gate > now:
                    # a 429 arrived while we queued: the slot is spent, wait the gate out and
                    # queue again so the released herd is paced by the budget
                    continue
            return now - start


# An X-RateLimit-Reset above this is an epoch timestamp, below it a delta in seconds (providers
# use both; 1e9 s is ~31 years, so no real delta gets near it).
_EPOCH_THRESHOLD = 1e9


def parse_reset(value: str | None, *, now_wall: float | None = None) -> float | None:
    """Seconds until the rate-limit window resets, from X-RateLimit-Reset; None if unusable."""
    if value is None:
        return None
    try:
        reset = float(value.strip())
    except ValueError:
        return parse_retry_after(value, now_wall=now_wall)  # some send an HTTP-date
    if not math.isfinite(reset) or reset < 0:
        return None
    if reset >= _EPOCH_THRESHOLD:
        if reset >= _EPOCH_THRESHOLD * 1000:  # epoch milliseconds
            reset /= 1000
        now_wall = time.time() if now_wall is None else now_wall
        return max(0.0, reset - now_wall)
    return reset
