"""The delivery policy: what to do with an alert after one attempt, as a pure function.

`decide(outcome, attempts, failing_since, now, policy)` -> one of
- `Ack("sent")`: the receiver accepted;
- `Ack("silenced")`: a silence matched (the silence stage's outcome); recorded, never sent;
- `RetryLater(delay_s)`: try the same message again after `delay_s`;
- `DeadLetter(reason)`: give up on this message; it goes to `gex:dead` with the reason;
- `DisableChannel(reason)`: the receiver says the endpoint is gone (410): stop sending on this
  channel and tell the operator, instead of dead-lettering every alert that follows.

Like Alertmanager's retry stage, it reads nothing but its arguments (no Redis, no clock, no
randomness it was not given), so every edge case is a unit test.

Edge cases:
- The retry budget (`max_retry_duration`) runs from the first failed attempt
  (`failing_since`, persisted with the attempt counter, so a restart does not reset it).
  Attempts are unlimited within it unless `max_attempts` is set.
- The last retry is scheduled no later than the end of the budget, so a message is tried once
  more at the deadline; a failure at or after the deadline is dead. Log lines therefore never
  promise a retry that will not happen.
- A Retry-After that lands beyond the budget is dead at once: waiting for it would overrun the
  budget, retrying sooner would ignore the receiver.
- A 429 (`throttled`) uses neither attempts nor the budget: the receiver works and asks us to
  slow down; rate limiting delays alerts, never drops them. Its wait is the Retry-After (or
  the backoff when it gave none).
- `after` values are finite and bounded already (retry_timing.parse_retry_after); a floor of
  50 ms keeps `Retry-After: 0` from spinning.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Literal

import msgspec

from gex_alertd.notify.base import DeliveryOutcome, Gone, Ok, Permanent, Retry
from gex_alertd.notify.channel import ChannelBase
from gex_alertd.retry_timing import equal_jitter

MIN_DELAY_S = 0.05


class Silenced(msgspec.Struct, frozen=True, tag="silenced"):
    """The silence stage's outcome: a silence matched this alert on this channel."""

    silence_id: str
    comment: str = ""


class RetryPolicy(msgspec.Struct, frozen=True):
    budget_s: float  # max_retry_duration
    base_s: float
    max_s: float
    max_attempts: int | None = None

    @classmethod
    def of(cls, cfg: ChannelBase) -> RetryPolicy:
        return cls(
            float(cfg.max_retry_duration),
            float(cfg.retry_base_s),
            float(cfg.retry_max_s),
            cfg.max_attempts,
        )


class Ack(msgspec.Struct, frozen=True, tag="ack"):
    kind: Literal["sent", "silenced"]
    detail: str = ""


class RetryLater(msgspec.Struct, frozen=True, tag="retry"):
    delay_s: float
    reason: str
    throttled: bool = False


class DeadLetter(msgspec.Struct, frozen=True, tag="dead"):
    reason: str


class DisableChannel(msgspec.Struct, frozen=True, tag="disable"):
    reason: str


Decision = Ack | RetryLater | DeadLetter | DisableChannel
Jitter = Callable[[int, float, float], float]


def _jitter(attempt: int, base_s: float, max_s: float) -> float:
    return equal_jitter(attempt, base_s, max_s)


def decide(
    outcome: DeliveryOutcome | Silenced,
    *,
    attempts: int,
    failing_since: float | None,
    now: float,
    policy: RetryPolicy,
    jitter: Jitter = _jitter,
) -> Decision:
    """The decision after an attempt. `attempts` counts failed attempts including this one
    (throttled answers excluded); `failing_since` is the wall time of the first failure (None
    when this is it); `now` is the wall time of this outcome."""
    if isinstance(outcome, Ok):
        return Ack("sent", outcome.detail)
    if isinstance(outcome, Silenced):
        return Ack("silenced", outcome.silence_id)
    if isinstance(outcome, Gone):
        return DisableChannel(outcome.reason)
    if isinstance(outcome, Permanent):
        return DeadLetter(outcome.reason)
    assert isinstance(outcome, Retry)
    if outcome.throttled:
        wait = (
            outcome.after if outcome.after is not None else jitter(1, policy.base_s, policy.max_s)
        )
        return RetryLater(max(wait, MIN_DELAY_S), outcome.reason, throttled=True)
    since = now if failing_since is None else min(failing_since, now)
    elapsed = now - since
    if policy.max_attempts is not None and attempts >= policy.max_attempts:
        return DeadLetter(f"gave up after {attempts} attempts: {outcome.reason}")
    left = policy.budget_s - elapsed
    spent = f"retry budget {_dur(policy.budget_s)} spent ({attempts} attempts over {_dur(elapsed)})"
    if left <= 0:
        return DeadLetter(f"{spent}: {outcome.reason}")
    if outcome.after is not None:
        if outcome.after > left:
            return DeadLetter(
                f"receiver asked to wait {_dur(outcome.after)}, beyond the retry budget "
                f"({_dur(left)} left after {attempts} attempts): {outcome.reason}"
            )
        delay = outcome.after
    else:
        delay = min(jitter(max(1, attempts), policy.base_s, policy.max_s), left)
    return RetryLater(max(delay, MIN_DELAY_S), outcome.reason)


def _dur(seconds: float) -> str:
    s = max(0.0, seconds)
    if s < 120:
        return f"{s:.3g}s"
    if s < 7200:
        return f"{s / 60:.3g}m"
    return f"{s / 3600:.3g}h"


def seeded_jitter(seed: int) -> Jitter:
    """A reproducible jitter for tests and replays of a decision sequence."""
    rng = random.Random(seed)
    return lambda attempt, base_s, max_s: equal_jitter(attempt, base_s, max_s, rng)
