"""GEX math against independent computations, and properties of rows, net, label and flip."""

from __future__ import annotations

import math
from statistics import NormalDist

from hypothesis import given, settings
from hypothesis import strategies as st

from gex_alertd.sources.simulator.flow import FlowBook, Print, Quote
from gex_alertd.sources.simulator.pricing import bs_gamma, bs_price
from gex_alertd.sources.simulator.snapshot import Leg, gamma_flip, label_of, net_of, strike_rows

_N = NormalDist()


def gamma_via_d2(s: float, k: float, t: float, vol: float, r: float) -> float:
    """Independent path: K e^{-rT} phi(d2) / (S^2 sigma sqrt T), phi from statistics."""
    sd = vol * math.sqrt(t)
    d2 = (math.log(s / k) + (r - vol * vol / 2) * t) / sd
    return k * math.exp(-r * t) * _N.pdf(d2) / (s * s * sd)


def close(a: float, b: float, rel: float = 1e-9) -> bool:
    return abs(a - b) <= rel * max(abs(a), abs(b), 1e-300)


def test_published_gamma_values() -> None:
    # S=K=100, sigma=20%, T=1, r=0: d1=0.1, gamma = phi(0.1)/20 = 0.019847627...
    assert close(bs_gamma(100, 100, 1.0, 0.2, 0.0), 0.3969525474770118 / 20)
    # Hull, Options Futures and Other Derivatives (example 19.6): gamma 0.066
    assert round(bs_gamma(49, 50, 20 / 52, 0.2, 0.05), 3) == 0.066
    # Hull example: S=42, K=40, r=10%, sigma=20%, T=0.5: call 4.76, put 0.81
    assert round(bs_price(True, 42, 40, 0.5, 0.2, 0.1), 2) == 4.76
    assert round(bs_price(False, 42, 40, 0.5, 0.2, 0.1), 2) == 0.81


@settings(deadline=None)
@given(
    s=st.floats(5, 30_000),
    moneyness=st.floats(0.6, 1.6),
    t=st.floats(1e-5, 2.0),
    vol=st.floats(0.05, 2.0),
    r=st.floats(0.0, 0.08),
)
def test_gamma_matches_independent_formula(
    s: float, moneyness: float, t: float, vol: float, r: float
) -> None:
    k = s * moneyness
    g = bs_gamma(s, k, t, vol, r)
    ref = gamma_via_d2(s, k, t, vol, r)
    if ref > 1e-250:  # far wings underflow to 0 in both
        assert close(g, ref), (g, ref)


legs_strategy = st.lists(
    st.builds(
        Leg,
        strike=st.sampled_from([90.0 + 0.5 * i for i in range(40)]),
        call=st.booleans(),
        gamma=st.floats(0.0, 0.5),
        oi=st.integers(0, 200_000),
        volume=st.integers(0, 10_000),
        oi_change=st.one_of(st.none(), st.integers(-5000, 5000)),
    ),
    min_size=1,
    max_size=80,
)


@settings(max_examples=200, deadline=None)
@given(legs=legs_strategy, spot=st.floats(80.0, 120.0))
def test_rows_net_label_flip(legs: list[Leg], spot: float) -> None:
    rows = strike_rows(legs, spot)
    strikes = [r.strike for r in rows]
    assert strikes == sorted(set(strikes))
    # per-strike GEX from the definition, computed independently
    for r in rows:
        here = [lg for lg in legs if lg.strike == r.strike]
        calls = sum(lg.gamma * lg.oi * 100 * spot**2 * 0.01 for lg in here if lg.call)
        puts = -sum(lg.gamma * lg.oi * 100 * spot**2 * 0.01 for lg in here if not lg.call)
        assert math.isclose(r.call_gex, calls, rel_tol=1e-9, abs_tol=1e-6)
        assert math.isclose(r.put_gex, puts, rel_tol=1e-9, abs_tol=1e-6)
        assert r.net_gex == r.call_gex + r.put_gex
        assert r.call_oi == sum(lg.oi for lg in here if lg.call)
        changes = [lg.oi_change for lg in here if lg.call and lg.oi_change is not None]
        assert r.call_oi_change == (sum(changes) if changes else None)
    net = net_of(rows)
    assert math.isclose(net, math.fsum(r.net_gex for r in rows), rel_tol=1e-9, abs_tol=1e-3)
    assert label_of(net) == ("negative" if net < 0 else "positive")
    flip = gamma_flip(rows, spot)
    cums, c = [], 0.0
    for r in rows:
        c += r.net_gex
        cums.append(c)
    crossings = [
        i
        for i in range(1, len(rows))
        if cums[i - 1] != 0 and (cums[i] == 0 or (cums[i - 1] < 0) != (cums[i] < 0))
    ]
    if not crossings:
        assert flip is None
        return
    assert flip is not None
    # the flip is the linear interpolation of one crossing (a flip on a shared strike can
    # belong to either neighbour), and no other crossing lies nearer spot
    candidates = []
    for i in crossings:
        k0, k1, c0, c1 = strikes[i - 1], strikes[i], cums[i - 1], cums[i]
        candidates.append(k0 + (k1 - k0) * c0 / (c0 - c1))
    assert any(math.isclose(flip, x, rel_tol=1e-9) for x in candidates)
    assert all(abs(flip - spot) <= abs(x - spot) * (1 + 1e-9) for x in candidates)


@settings(max_examples=200, deadline=None)
@given(
    settled=st.integers(0, 5000),
    prints=st.lists(
        st.tuples(st.integers(1, 3000), st.floats(0.5, 1.5), st.sampled_from([0, 1, 2])),
        max_size=40,
    ),
)
def test_effective_oi_never_negative(settled: int, prints: list[tuple[int, float, int]]) -> None:
    book = FlowBook([settled])
    quote = Quote(1.0, 1.2)
    for size, price, where in prints:
        p = (quote.bid, quote.ask, round(price, 2))[where]
        book.apply(Print(0, size, p, quote))
        assert book.effective(0) >= 0
    assert book.volume[0] == sum(s for s, _, _ in prints)


def test_inference_from_the_quote() -> None:
    book = FlowBook([1000])
    q = Quote(2.0, 2.2)
    assert book.apply(Print(0, 10, 2.2, q)).opening  # at the ask: buyer opening
    assert book.change[0] == 10 * 0.8
    assert not book.apply(Print(0, 10, 2.0, q)).opening  # at the bid: seller closing
    mid = book.apply(Print(0, 10, 2.1, q))
    assert mid.confidence == 0.5 and mid.oi_change(10) == 0
    big = book.apply(Print(0, 5000, 2.0, q))  # more than the OI: must be opening
    assert big.opening and big.confidence == 1.0
    assert book.effective(0) == 1000 + 5000
