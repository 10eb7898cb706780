"""One Retry-After parser and one equal-jitter backoff for the upstream and the notifiers."""

from __future__ import annotations

import random
from email.utils import formatdate

import pytest

from gex_alertd.notify import base
from gex_alertd.retry_timing import MAX_WAIT_S, equal_jitter, parse_retry_after
from gex_alertd.sources import ratelimit
from gex_alertd.sources.backoff import Backoff

NOW = 1_772_463_845.0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("3", 3.0),
        ("-4", 0.0),
        ("1e12", MAX_WAIT_S),
        ("nan", None),
        ("NaN", None),
        ("inf", None),
        ("-inf", None),
        ("", None),
        ("soon", None),
        (formatdate(NOW + 7, usegmt=True), 7.0),
        (formatdate(NOW + 86400 * 30, usegmt=True), MAX_WAIT_S),
        (formatdate(NOW - 60, usegmt=True), 0.0),
    ],
)
def test_parse_retry_after_is_finite_and_bounded(value: str, expected: float | None) -> None:
    got = parse_retry_after(value, now_wall=NOW)
    assert got == (pytest.approx(expected) if expected is not None else None)


def test_one_parser_for_the_upstream_and_the_notifiers() -> None:
    assert ratelimit.parse_retry_after is parse_retry_after
    assert base.parse_retry_after is parse_retry_after


def test_equal_jitter_is_within_half_and_whole_step() -> None:
    rng = random.Random(1)
    for attempt in (1, 2, 5, 100, 10_000):
        step = min(30.0, 0.5 * 2 ** min(attempt - 1, 62))
        draws = [equal_jitter(attempt, 0.5, 30.0, rng) for _ in range(100)]
        assert all(step / 2 <= d <= step for d in draws)


def test_source_backoff_uses_the_same_jitter() -> None:
    b, rng = Backoff(1.0, 60.0, random.Random(7)), random.Random(7)
    assert [b.failure() for _ in range(8)] == [equal_jitter(n, 1.0, 60.0, rng) for n in range(1, 9)]
