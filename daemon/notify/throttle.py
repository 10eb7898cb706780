"""A channel's send budget (`rate_per_s`): a token bucket, held longer after a 429."""

from __future__ import annotations

import time


class TokenBucket:
    """Send budget; `burst` 1 means strictly one send per 1/rate seconds."""

    def __init__(self, rate: float, burst: float = 1.0) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = time.monotonic()

    def _fill(self, now: float) -> None:
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def ready_at(self) -> float:
        now = time.monotonic()
        self._fill(now)
        return now if self.tokens >= 1 else now + (1 - self.tokens) / self.rate

    def take(self) -> None:
        self._fill(time.monotonic())
        self.tokens -= 1

    def hold(self, seconds: float) -> None:
        """The receiver said 429: spend the budget for that long."""
        self._fill(time.monotonic())
        self.tokens = min(self.tokens, 1 - seconds * self.rate)
