"""The key-wide budget and the Retry-After gate, observed from the upstream's arrival times.

Only lower bounds on timing are asserted (a request must not come *before* it is allowed); how
much later it comes is the machine's business.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from email.utils import formatdate

import pytest

from gex_alertd.ops.metrics import RATE_LIMIT_WAIT
from gex_alertd.sources.errors import RateLimited, TransientError
from gex_alertd.sources.flowgex import FlowGexClient
from gex_alertd.sources.ratelimit import MAX_WAIT_S, KeyLimiter
from tests.sources.conftest import ClientFactory
from tests.support.fake_time import FakeTime
from tests.support.upstream import Recorded, Reply, Upstream, flow_gex_body
from tests.support.wait import WAIT_S, eventually

# asyncio may wake a sleeper up to its clock resolution early; allow a hair for that
EPS = 1e-3


def assert_held(first: Recorded, then: Recorded, wait_s: float) -> None:
    """`then` did not arrive before `wait_s` after `first` was answered."""
    assert first.responded_at is not None
    assert then.arrived_at >= first.responded_at + wait_s - EPS


def too_many(retry_after: str | None = None, **headers: str) -> Reply:
    if retry_after is not None:
        headers["Retry-After"] = retry_after
    return Reply.json({"message": "Too many requests"}, status=429, headers=headers)


async def test_retry_after_holds_requests_waiting_for_a_slot(
    upstream: Upstream, make_client: ClientFactory
) -> None:
    # one request in flight at a time: the other five queue on the client and must all wait
    client = make_client(max_concurrency=1)
    upstream.push(too_many("1"))
    outcomes = await asyncio.gather(
        *(client.fetch(sym) for sym in ("SPY", "QQQ", "IWM", "DIA", "TLT", "GLD")),
        return_exceptions=True,
    )
    assert isinstance(outcomes[0], RateLimited) and outcomes[0].retry_after == 1
    assert all(not isinstance(o, BaseException) for o in outcomes[1:])
    first, *rest = upstream.requests
    assert first.status == 429 and first.responded_at is not None
    window_end = first.responded_at + 1.0
    assert len(rest) == 5
    assert [r for r in rest if r.arrived_at < window_end - EPS] == []


async def test_retry_after_holds_requests_waiting_on_the_budget(
    upstream: Upstream, make_client: ClientFactory
) -> None:
    # 120/min, burst 1, on a clock the test moves: the followers sleep in the budget queue
    # (slots at +0.5, +1.0, +1.5 s) when the 429 lands, and must notice the gate when they wake
    fake = FakeTime()
    client = make_client()
    client.limiter = KeyLimiter(120, burst=1, clock=fake.now, sleep=fake.sleep)
    upstream.push(too_many("1"))
    start = fake.now()
    tasks = [asyncio.create_task(client.fetch(s)) for s in ("SPY", "QQQ", "IWM", "DIA")]
    with pytest.raises(RateLimited):
        await tasks[0]
    assert client.limiter.gate_until == start + 1.0
    await fake.settled(3, "three followers queued for budget slots")
    assert len(upstream.requests) == 1

    sent_at: list[float] = []
    while fake.sleeping:
        now = fake.advance_to_next()
        # settled: every follower is either asleep again or its request reached the upstream
        await eventually(
            lambda: fake.sleeping + len(upstream.requests) - 1 == 3, "followers to settle"
        )
        sent_at += [now] * (len(upstream.requests) - 1 - len(sent_at))
    await asyncio.gather(*tasks[1:])
    # none before the gate opens, and the released herd is still paced by the budget
    assert sent_at == sorted(sent_at) and len(sent_at) == 3
    assert sent_at[0] >= start + 1.0
    assert all(b - a >= client.limiter.interval for a, b in itertools.pairwise(sent_at))


async def test_retry_after_after_concurrent_429s(
    upstream: Upstream, make_client: ClientFactory
) -> None:
    # four requests in flight together all get a 429; none of their retries may come early
    client = make_client()
    upstream.push(
        *(Reply(429, {"message": "slow"}, {"Retry-After": "0.6"}, 0.05) for _ in range(4))
    )
    syms = ("SPY", "QQQ", "IWM", "DIA")
    first_round = await asyncio.gather(*(client.fetch(s) for s in syms), return_exceptions=True)
    assert all(isinstance(o, RateLimited) for o in first_round)
    limited = list(upstream.requests)
    second_round = await asyncio.gather(*(client.fetch(s) for s in syms))
    assert [f.snapshot.symbol for f in second_round] == list(syms)
    retries = upstream.requests[len(limited) :]
    for r429 in limited:
        assert r429.responded_at is not None
    earliest_allowed = min(r.responded_at for r in limited if r.responded_at) + 0.6
    assert [r for r in retries if r.arrived_at < earliest_allowed - EPS] == []


async def test_retry_after_as_http_date(upstream: Upstream, make_client: ClientFactory) -> None:
    client = make_client()
    until_wall = float(int(time.time()) + 2)  # HTTP-dates have whole seconds
    upstream.push(too_many(formatdate(until_wall, usegmt=True)))
    with pytest.raises(RateLimited) as info:
        await client.fetch("SPY")
    assert 0 <= info.value.retry_after <= 2.0
    await client.fetch("SPY")
    wall_minus_mono = time.time() - time.monotonic()
    assert upstream.requests[1].arrived_at + wall_minus_mono >= until_wall - 0.01


async def test_missing_retry_after_uses_reset_header(
    upstream: Upstream, make_client: ClientFactory
) -> None:
    client = make_client()
    upstream.push(too_many(**{"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "0.5"}))
    with pytest.raises(RateLimited) as info:
        await client.fetch("SPY")
    assert info.value.retry_after == pytest.approx(0.5)
    await client.fetch("SPY")
    first, second = upstream.requests
    assert_held(first, second, 0.5)


async def test_missing_retry_after_defaults_to_one_second(
    upstream: Upstream, make_client: ClientFactory
) -> None:
    client = make_client()
    upstream.push(too_many(), too_many("soon-ish"))  # absent, then unparseable
    for _ in range(2):
        with pytest.raises(RateLimited) as info:
            await client.fetch("SPY")
        assert info.value.retry_after == 1.0
    # the gate really holds the next request
    await client.fetch("SPY")
    second_429, ok = upstream.requests[1:]
    assert_held(second_429, ok, 1.0)


async def test_exhausted_window_on_a_200_pauses_the_key(
    upstream: Upstream, make_client: ClientFactory
) -> None:
    client = make_client()
    upstream.push(
        Reply.json(
            {
                "symbol": "SPY",
                "as_of": "2026-03-02T15:00:00Z",
                "underlying_price": 500.0,
                "live_net_gex": 1.0,
            },
            headers={"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "0",
                     "X-RateLimit-Reset": "0.4"},
        )
    )  # fmt: skip
    await client.fetch("SPY")
    await client.fetch("QQQ")
    first, second = upstream.requests
    assert_held(first, second, 0.4)


async def test_503_retry_after_is_honoured(upstream: Upstream, make_client: ClientFactory) -> None:
    client = make_client()
    upstream.push(
        Reply.json({"message": "maintenance"}, status=503, headers={"Retry-After": "0.4"})
    )
    with pytest.raises(TransientError) as info:
        await client.fetch("SPY")
    assert info.value.retry_after == pytest.approx(0.4)
    await client.fetch("SPY")
    first, second = upstream.requests
    assert_held(first, second, 0.4)


async def test_requests_per_min_paces_a_burst(
    upstream: Upstream, make_client: ClientFactory
) -> None:
    # 600/min with burst 1: one request per 100 ms, across symbols (the budget is per key)
    client = make_client(requests_per_min=600, burst=1)
    # what each request waited, as the limiter measured it: how much that is depends on how
    # late each task got to the limiter on a busy machine, so the metric is checked against it
    waits: list[float] = []
    acquire = client.limiter.acquire

    async def measured() -> float:
        waits.append(await acquire())
        return waits[-1]

    client.limiter.acquire = measured  # type: ignore[method-assign]  # a spy on the real one
    waited_before = RATE_LIMIT_WAIT._value.get()
    started = time.monotonic()
    syms = [f"S{i}" for i in range(6)]
    await asyncio.gather(*(client.fetch(s) for s in syms))
    arrivals = sorted(r.arrived_at for r in upstream.requests)
    assert len(arrivals) == 6
    for i, t in enumerate(arrivals):
        assert t >= started + i * 0.1 - EPS
    assert len(waits) == 6 and sum(waits) > 0
    assert RATE_LIMIT_WAIT._value.get() - waited_before == pytest.approx(sum(waits))


async def test_burst_allows_that_many_at_once(
    upstream: Upstream, make_client: ClientFactory
) -> None:
    # 60/min with burst 3: three go at once, the fourth waits a full second
    client = make_client(requests_per_min=60, burst=3)
    started = time.monotonic()
    await asyncio.gather(*(client.fetch(s) for s in ("A", "B", "C", "D")))
    arrivals = sorted(r.arrived_at for r in upstream.requests)
    assert arrivals[3] >= started + 1.0 - EPS


async def test_max_concurrency_bounds_requests_in_flight(
    upstream: Upstream, make_client: ClientFactory
) -> None:
    in_flight = 0
    peak = 0
    full = asyncio.Event()

    async def slow(request: object) -> Reply:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        if in_flight >= 3:
            full.set()
        # hold the first requests until three are in: on a busy machine one could otherwise
        # be answered before the next arrives, and the peak would measure the machine
        await asyncio.wait_for(full.wait(), WAIT_S)
        await asyncio.sleep(0.05)  # room for a fourth, were the bound not enforced
        in_flight -= 1
        return Reply.json(
            {"symbol": "X", "as_of": "2026-03-02T15:00:00Z", "underlying_price": 1.0,
             "live_net_gex": 0.0}
        )  # fmt: skip

    upstream.set_default(slow)
    client = make_client(max_concurrency=3)
    await asyncio.gather(*(client.fetch("X") for _ in range(12)))
    assert len(upstream.requests) == 12
    assert peak == 3


async def test_cancelled_waiter_gives_its_slot_back(upstream: Upstream) -> None:
    client = FlowGexClient(upstream.url, "k-cancel-test", requests_per_min=60, burst=1)
    try:
        await client.fetch("SPY")  # takes the only slot of this second
        tat = client.limiter._tat
        waiter = asyncio.create_task(client.fetch("QQQ"))
        # cancel it once it holds a reservation, not after a guess at how long that takes
        await eventually(lambda: client.limiter._tat > tat, "the waiter to reserve a slot")
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        # the next request is due one interval after the first, not two
        assert client.limiter._tat - time.monotonic() <= 1.0
    finally:
        await client.close()


async def test_absurd_retry_after_is_clamped(
    upstream: Upstream, make_client: ClientFactory
) -> None:
    client = make_client()
    upstream.push(too_many("86400000"))
    with pytest.raises(RateLimited) as info:
        await client.fetch("SPY")
    assert info.value.retry_after == MAX_WAIT_S
    assert client.limiter.gate_until - time.monotonic() <= MAX_WAIT_S


async def test_remaining_zero_without_reset_does_not_block(
    upstream: Upstream, make_client: ClientFactory
) -> None:
    client = make_client()
    upstream.push(Reply.json(flow_gex_body("SPY"), headers={"X-RateLimit-Remaining": "0"}))
    await client.fetch("SPY")
    assert client.limiter.gate_until <= time.monotonic()
