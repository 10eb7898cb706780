"""KeyLimiter and header parsing, without a network."""

from __future__ import annotations

import asyncio
import time
from email.utils import formatdate

import pytest

from gex_alertd.sources.ratelimit import MAX_WAIT_S, KeyLimiter, parse_reset, parse_retry_after
from tests.support.fake_time import FakeTime
from tests.support.wait import eventually

NOW = 1_772_463_845.0  # a fixed wall clock for the parsers


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("3", 3.0),
        (" 1.5 ", 1.5),
        ("0", 0.0),
        ("-4", 0.0),
        (formatdate(NOW + 7, usegmt=True), 7.0),
        (formatdate(NOW - 7, usegmt=True), 0.0),  # already past
        ("Mon, 02 Mar 2026 15:04:12 GMT", 1_772_463_852.0 - NOW),
        ("", None),
        (None, None),
        ("soon", None),
        ("nan", None),
        ("inf", None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    got = parse_retry_after(value, now_wall=NOW)
    assert got == (pytest.approx(expected) if expected is not None else None)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("12", 12.0),  # delta seconds
        (str(int(NOW + 30)), 30.0),  # epoch seconds
        (str(int((NOW + 30) * 1000)), 30.0),  # epoch milliseconds
        (str(int(NOW - 30)), 0.0),
        (formatdate(NOW + 5, usegmt=True), 5.0),
        ("-1", None),
        ("x", None),
        (None, None),
    ],
)
def test_parse_reset(value: str | None, expected: float | None) -> None:
    got = parse_reset(value, now_wall=NOW)
    assert got == (pytest.approx(expected) if expected is not None else None)


def test_default_burst_is_about_a_second_of_requests() -> None:
    assert KeyLimiter(120).burst == 2
    assert KeyLimiter(30).burst == 1
    assert KeyLimiter(6000).burst == 100
    with pytest.raises(ValueError):
        KeyLimiter(60, burst=0)


def test_gate_only_extends_and_is_capped() -> None:
    limiter = KeyLimiter(60)
    end = limiter.close_gate(5, now=100.0)
    assert end == 105.0
    assert limiter.close_gate(1, now=100.0) == 105.0  # a shorter window never shortens it
    assert limiter.close_gate(10**9, now=100.0) == 100.0 + MAX_WAIT_S


async def test_acquire_waits_for_the_gate() -> None:
    limiter = KeyLimiter(60_000)
    limiter.close_gate(0.3)
    gate_end = limiter.gate_until
    waited = await limiter.acquire()
    assert time.monotonic() >= gate_end
    assert waited > 0


async def test_gate_closed_while_queued_holds_the_waiter() -> None:
    fake = FakeTime()
    limiter = KeyLimiter(600, burst=1, clock=fake.now, sleep=fake.sleep)  # 100 ms slots
    assert await limiter.acquire() == 0.0  # first slot is free
    waiter = asyncio.create_task(limiter.acquire())
    await fake.settled(1, "the waiter asleep until its slot")
    assert fake.next_deadline() == pytest.approx(fake.now() + 0.1)
    gate_end = limiter.close_gate(0.4)  # a 429 lands while the waiter sleeps for its slot
    fake.advance_to_next()  # its slot comes: it must see the gate and sleep again, not go
    await fake.settled(1, "the waiter back asleep, now for the gate")
    assert not waiter.done()
    while not waiter.done():
        fake.advance_to_next()
        await eventually(lambda: waiter.done() or fake.sleeping == 1, "the waiter to settle")
    assert fake.now() >= gate_end
    assert await waiter == pytest.approx(fake.now() - (gate_end - 0.4))


async def test_slots_are_served_in_order() -> None:
    limiter = KeyLimiter(1200, burst=1)  # 50 ms slots
    order: list[int] = []

    async def take(i: int) -> None:
        await limiter.acquire()
        order.append(i)

    await asyncio.gather(*(take(i) for i in range(6)))
    assert order == list(range(6))
