"""The delivery policy as a pure function: outcome + attempts + time budget -> decision.
No Redis, no clock, no network: every edge case of notify/policy.py in numbers."""

from __future__ import annotations

import pytest

from gex_alertd.notify.base import Gone, Ok, Permanent, Retry
from gex_alertd.notify.policy import (
    MIN_DELAY_S,
    Ack,
    DeadLetter,
    DisableChannel,
    RetryLater,
    RetryPolicy,
    Silenced,
    decide,
)
from gex_alertd.notify.webhook import WebhookChannel

HOUR = 3600.0
POLICY = RetryPolicy(budget_s=HOUR, base_s=1.0, max_s=300.0)


def full_step(attempt: int, base_s: float, max_s: float) -> float:
    """Deterministic stand-in for the jitter: the whole step."""
    return min(max_s, base_s * 2 ** (attempt - 1))


def after(outcome: Retry | Ok | Permanent | Gone | Silenced, attempts: int, elapsed: float,
          policy: RetryPolicy = POLICY) -> object:  # fmt: skip
    t0 = 1_000_000.0
    return decide(
        outcome,
        attempts=attempts,
        failing_since=t0,
        now=t0 + elapsed,
        policy=policy,
        jitter=full_step,
    )


def test_ok_silenced_permanent_gone() -> None:
    assert after(Ok("HTTP 200"), 0, 0) == Ack("sent", "HTTP 200")
    assert after(Silenced("s-1"), 0, 0) == Ack("silenced", "s-1")
    assert after(Permanent("HTTP 404"), 1, 0) == DeadLetter("HTTP 404")
    assert after(Gone("HTTP 410"), 0, 0) == DisableChannel("HTTP 410")


def test_attempts_are_uncapped_within_the_budget() -> None:
    # the old default gave up after 8 attempts (94.5 s); now attempt 50 still retries
    d = after(Retry("HTTP 503"), 50, 1800.0)
    assert isinstance(d, RetryLater) and d.delay_s == 300.0


def test_the_budget_ends_retries_and_says_so() -> None:
    d = after(Retry("HTTP 503"), 20, HOUR)
    assert isinstance(d, DeadLetter)
    assert d.reason == "retry budget 60m spent (20 attempts over 60m): HTTP 503"


def test_the_last_retry_lands_at_the_deadline_not_after() -> None:
    d = after(Retry("HTTP 503"), 12, HOUR - 10.0)
    assert d == RetryLater(10.0, "HTTP 503")


def test_a_sequence_of_failures_spends_exactly_the_budget() -> None:
    """Simulated outage: each attempt fails; time moves by the decided delay only."""
    t, attempts, log = 0.0, 0, []
    while True:
        attempts += 1
        d = after(Retry("HTTP 503"), attempts, t)
        log.append(d)
        if isinstance(d, DeadLetter):
            break
        assert isinstance(d, RetryLater)
        t += d.delay_s
    assert t == HOUR  # the last try happened at the deadline, and not later
    # 9 tries over 1+2+...+256 = 511 s, 10 at 300 s (3511 s), one clamped to 89 s, the last dead
    assert attempts == 21
    assert all(isinstance(x, RetryLater) for x in log[:-1])


def test_max_attempts_still_ends_sooner_when_set() -> None:
    policy = RetryPolicy(budget_s=HOUR, base_s=1.0, max_s=300.0, max_attempts=3)
    assert isinstance(after(Retry("HTTP 503"), 2, 5.0, policy), RetryLater)
    d = after(Retry("HTTP 503"), 3, 5.0, policy)
    assert d == DeadLetter("gave up after 3 attempts: HTTP 503")


def test_retry_after_is_honoured_within_the_budget_and_dead_beyond_it() -> None:
    assert after(Retry("HTTP 503", 120.0), 1, 0.0) == RetryLater(120.0, "HTTP 503")
    d = after(Retry("HTTP 503", 600.0), 5, HOUR - 300.0)
    assert isinstance(d, DeadLetter) and "beyond the retry budget" in d.reason


def test_retry_after_zero_does_not_spin() -> None:
    assert after(Retry("HTTP 503", 0.0), 1, 0.0) == RetryLater(MIN_DELAY_S, "HTTP 503")


def test_throttling_uses_neither_attempts_nor_the_budget() -> None:
    d = after(Retry("HTTP 429", 30.0, throttled=True), 0, 10 * HOUR)
    assert d == RetryLater(30.0, "HTTP 429", throttled=True)


def test_first_failure_starts_the_budget() -> None:
    d = decide(
        Retry("timeout"), attempts=1, failing_since=None, now=5.0, policy=POLICY, jitter=full_step
    )
    assert d == RetryLater(1.0, "timeout")


@pytest.mark.parametrize(
    ("cfg", "expected"),
    [
        ({}, RetryPolicy(HOUR, 1.0, 300.0, None)),
        (
            {"max_retry_duration": 600.0, "max_attempts": 5, "retry_base_s": 2.0},
            RetryPolicy(600.0, 2.0, 300.0, 5),
        ),
    ],
)
def test_policy_from_channel_config(cfg: dict[str, float], expected: RetryPolicy) -> None:
    assert RetryPolicy.of(WebhookChannel(url="http://127.0.0.1/h", **cfg)) == expected  # type: ignore[arg-type]  # the test passes floats where Duration is declared
