"""Simulation clocks: sim seconds since the simulation started, plus a clock for rate limits.

`RealClock` runs `speed` times faster than the wall clock from the first request on (demo,
`simulate`); `ManualClock` moves only when a test advances it, which makes end-to-end tests
deterministic and instant.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    start: datetime  # the simulated instant at sim time 0 (UTC)

    def now(self) -> float:
        """Simulated seconds since `start`."""
        ...

    def limiter_now(self) -> float:
        """Seconds on the clock the per-key rate limit counts in."""
        ...


# how long a faster-than-real simulation runs before its as_of passes the wall clock
AHEAD_AFTER_S = 3600.0
MAX_LEAD_S = 86400.0  # but never start further back than a day (a short retention refuses it)


def wall_start() -> datetime:
    """Now, truncated to the second, so as_of values stay round."""
    return datetime.now(UTC).replace(microsecond=0)


def lead_s(speed: float) -> float:
    """How far before now a simulation at `speed` starts when no start is given. At speed 1 it
    is now; faster, the simulated clock starts back so that its as_of stays behind the wall
    clock for AHEAD_AFTER_S of running (speed 10: 9 hours back, level after an hour): a
    daemon refuses an as_of ahead of its clock by more than source.max_future_s."""
    return min(max(0.0, speed - 1.0) * AHEAD_AFTER_S, MAX_LEAD_S)


class RealClock:
    def __init__(self, start: datetime | None = None, speed: float = 1.0):
        if speed <= 0:
            raise ValueError(f"speed must be > 0, got {speed}")
        self.start = start or wall_start() - timedelta(seconds=lead_s(speed))
        self.speed = speed
        self._t0: float | None = None

    def now(self) -> float:
        # Sim time 0 is the first request, not construction: building chains and whatever
        # else the host does before polling can take seconds on a busy machine, and would
        # otherwise eat into the scenario's first events unseen.
        if self._t0 is None:
            self._t0 = time.monotonic()
        return (time.monotonic() - self._t0) * self.speed

    def limiter_now(self) -> float:
        # Rate limits and Retry-After are about real request rates, whatever the sim speed.
        return time.monotonic()


class ManualClock:
    DEFAULT_START = datetime(2026, 3, 2, 14, 30, tzinfo=UTC)  # a Monday, 09:30 New York

    def __init__(self, start: datetime | None = None, t: float = 0.0):
        # without an explicit start, a scenario's `start` wins (see embedded.make_simulator)
        self.explicit_start = start is not None
        self.start = start or self.DEFAULT_START
        self._t = t

    def now(self) -> float:
        return self._t

    def limiter_now(self) -> float:
        return self._t

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("a simulation clock never goes back")
        self._t += seconds
        return self._t

    def set(self, t: float) -> None:
        if t < self._t:
            raise ValueError(f"a simulation clock never goes back ({t} < {self._t})")
        self._t = t


def at(clock: Clock, t: float) -> datetime:
    return clock.start + timedelta(seconds=t)
