"""Backoff: grows, is bounded, is jittered, and never undercuts a server's Retry-After."""

from __future__ import annotations

import random

import pytest

from gex_alertd.sources.backoff import Backoff
from gex_alertd.sources.errors import (
    AuthError,
    BadRequest,
    MalformedPayload,
    RateLimited,
    TransientError,
    UnknownSymbol,
)


def transient() -> TransientError:
    return TransientError("HTTP 502", status=502)


def test_grows_exponentially_within_bounds() -> None:
    b = Backoff(1.0, 60.0, rng=random.Random(1))
    delays = [b.failure(transient()) for _ in range(10)]
    caps = [min(60.0, 2.0**n) for n in range(10)]
    for delay, cap in zip(delays, caps, strict=True):
        assert cap / 2 <= delay <= cap
    assert b.attempts == 10
    # the deterministic floor doubles until the cap
    assert delays[5] >= 16.0 and delays[0] <= 1.0


def test_bounded_by_max_even_after_a_long_outage() -> None:
    b = Backoff(0.5, 30.0, rng=random.Random(2))
    delays = [b.failure(MalformedPayload("bad")) for _ in range(2000)]
    assert max(delays) <= 30.0
    assert min(delays[10:]) >= 15.0


def test_jittered() -> None:
    delays = {Backoff(1.0, 60.0, rng=random.Random(seed)).failure() for seed in range(50)}
    assert len(delays) == 50  # fifty watchers failing together spread out
    # and still spread at the fifth attempt
    fifth = {Backoff(1.0, 60.0, rng=random.Random(s)) for s in range(20)}
    for x in fifth:
        for _ in range(4):
            x.failure()
    assert len({x.failure() for x in fifth}) == 20


def test_success_resets() -> None:
    b = Backoff(1.0, 60.0, rng=random.Random(4))
    for _ in range(6):
        b.failure(transient())
    b.success()
    assert b.attempts == 0
    assert b.failure(transient()) <= 1.0


@pytest.mark.parametrize("retry_after", [0.1, 5.0, 90.0, 600.0])
def test_rate_limited_never_less_than_retry_after(retry_after: float) -> None:
    b = Backoff(1.0, 60.0, rng=random.Random(5))
    for _ in range(5):
        delay = b.failure(RateLimited("slow", retry_after=retry_after, status=429))
        assert delay >= retry_after  # even above max_s: the provider said so
        assert delay <= max(60.0, retry_after)


@pytest.mark.parametrize("retry_after", [0.1, 5.0, 90.0])
def test_rate_limited_waits_exactly_retry_after_and_does_not_grow(retry_after: float) -> None:
    """flowgex-api.md: a 429's Retry-After is honoured exactly. The backoff grew with every
    429 (the 6th waited 16-32 s for a Retry-After of 0.1 s), and the attempts it counted made
    the next 5xx wait longer too: a 429 is no failure of the target."""
    b = Backoff(1.0, 60.0, rng=random.Random(5))
    b.failure(TransientError("boom", status=502))
    for _ in range(6):
        assert b.failure(RateLimited("slow", retry_after=retry_after, status=429)) == retry_after
    assert b.attempts == 1
    assert b.failure(TransientError("boom", status=502)) <= 2.0  # attempt 2: at most base * 2


def test_transient_with_retry_after_is_respected() -> None:
    err = TransientError("maintenance", status=503)
    err.retry_after = 42.0  # the client sets it from a 503
    assert Backoff(1.0, 60.0).failure(err) >= 42.0


@pytest.mark.parametrize("err", [AuthError("no"), BadRequest("bad"), UnknownSymbol("who")])
def test_non_retryable_errors_do_not_retry_hot(err: Exception) -> None:
    b = Backoff(1.0, 60.0, rng=random.Random(6))
    assert 30.0 <= b.failure(err) <= 60.0


def test_bad_bounds_refused() -> None:
    with pytest.raises(ValueError):
        Backoff(0, 10)
    with pytest.raises(ValueError):
        Backoff(10, 1)
