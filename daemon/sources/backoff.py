"""Per-watch-entry retry delays: exponential growth, jittered, bounded, Retry-After aware.

The poller keeps one `Backoff` per watch entry, calls `failure(err)` after a failed fetch to
learn how long to wait before the next attempt, and `success()` after a good one.
"""

from __future__ import annotations

import random

from gex_alertd.retry_timing import equal_jitter
from gex_alertd.sources.errors import RateLimited, SourceError


class Backoff:
    """Equal-jitter exponential backoff.

    Attempt n (1-based) waits a delay drawn uniformly from [cap/2, cap] with
    cap = min(max_s, base_s * 2**(n-1)). Half of the delay is deterministic so the wait really
    grows (a full-jitter draw can be ~0 and retry hot), the other half spreads a fleet of
    watchers that failed together so they do not come back in lockstep.

    - A 429 (RateLimited) waits exactly its Retry-After (flowgex-api.md: "honour Retry-After
      exactly"), even above `max_s`, and is not counted as a failed attempt: the key was busy,
      the target is not failing, so neither this wait nor a later error's grows from it.
    - Another error carrying `retry_after` (a 503 with Retry-After) never yields less than
      that, even above `max_s`: the provider said so.
    - A non-retryable SourceError (400/401/403/404/other 4xx) waits the maximum straight away:
      retrying those hot only burns the key's budget.
    """

    __slots__ = ("attempts", "base_s", "max_s", "rng")  # one per watch target

    def __init__(self, base_s: float, max_s: float, rng: random.Random | None = None) -> None:
        if base_s <= 0 or max_s < base_s:
            raise ValueError(f"Backoff needs 0 < base_s <= max_s, got {base_s}, {max_s}")
        self.base_s = base_s
        self.max_s = max_s
        # one shared generator: a Random per entry costs 2.5 KB (12 MB at 5,000 symbols)
        self.rng = rng  # None: the shared generator of retry_timing
        self.attempts = 0  # consecutive failures since the last success

    def failure(self, err: BaseException | None = None) -> float:
        """Record one failure; return the delay in seconds before the next attempt."""
        if isinstance(err, RateLimited):
            return float(err.retry_after)
        self.attempts += 1
        if isinstance(err, SourceError) and not err.retryable:
            delay = equal_jitter(1, self.max_s, self.max_s, self.rng)
        else:
            delay = equal_jitter(self.attempts, self.base_s, self.max_s, self.rng)
        retry_after = getattr(err, "retry_after", None)
        if isinstance(retry_after, int | float) and retry_after > delay:
            delay = float(retry_after)
        return delay

    def success(self) -> None:
        self.attempts = 0
