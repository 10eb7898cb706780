"""The simulator engine without HTTP: determinism, caching, the model's numbers, the demo."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import msgspec
import pytest

from gex_alertd.config import SimulatorOptions
from gex_alertd.model import FlowGex, decode_flow_gex
from gex_alertd.sources.simulator.clock import ManualClock
from gex_alertd.sources.simulator.embedded import make_simulator
from gex_alertd.sources.simulator.engine import SimError, Simulator
from gex_alertd.sources.simulator.market import RATE, YEAR_S
from gex_alertd.sources.simulator.scenario import loads_scenario

SCENARIO = """
start: 2026-03-02T14:30:00Z
events:
  - {at: 5s, do: block, symbol: SPY, contracts: 30000, right: put, strike: 590}
  - {at: 8s, do: spot, symbol: SPY, move_pct: -2}
"""


def sim_for(cache_s: float = 0.0, seed: int = 7, scenario: str = SCENARIO) -> Simulator:
    return make_simulator(SimulatorOptions(seed=seed, cache_s=cache_s), scenario, ManualClock())


def snap(sim: Simulator, symbol: str = "SPY", expiry: str | None = None) -> FlowGex:
    return decode_flow_gex(sim.body("flow", symbol, expiry), symbol=symbol)


def test_default_levels_and_chain_size() -> None:
    sim = sim_for()
    levels = {s: snap(sim, s).underlying_price for s in ("SPY", "QQQ", "IWM", "SPX", "NDX")}
    assert levels == {"SPY": 600.0, "QQQ": 520.0, "IWM": 240.0, "SPX": 6000.0, "NDX": 21000.0}
    for sym in ("SPY", "QQQ", "IWM", "SPX", "NDX", "AAPL"):
        s = snap(sim, sym)
        assert 180 <= len(s.strikes) <= 200, (sym, len(s.strikes))
        assert s.live_net_gex_label == "positive" and s.flip is not None
        assert s.flip < s.underlying_price  # a positive-gamma open, flip a little below spot
    other = snap(sim, "AAPL").underlying_price
    assert other == snap(sim_for(seed=99), "AAPL").underlying_price  # seeded by the name


def test_same_seed_same_scenario_byte_identical() -> None:
    a, b, c = sim_for(), sim_for(), sim_for(seed=8)
    bodies: list[list[bytes]] = [[], [], []]
    for t in (0, 1, 3, 7, 12, 30):
        for sim, out in zip((a, b, c), bodies, strict=True):
            assert isinstance(sim.clock, ManualClock)
            sim.clock.set(t)
            # request pattern differs (b also asks for QQQ and an expiry): SPY must not care
            if sim is b:
                sim.body("flow", "QQQ", None)
                sim.body("exposure", "SPY", None)
            out.append(sim.body("flow", "SPY", None))
    assert bodies[0] == bodies[1]
    assert bodies[0] != bodies[2]


def test_cache_quantum_keeps_as_of() -> None:
    sim = sim_for(cache_s=15)
    clock = sim.clock
    assert isinstance(clock, ManualClock)
    first = sim.body("flow", "SPY", None)
    clock.set(14.9)
    assert sim.body("flow", "SPY", None) is first  # the provider's cache: same bytes
    clock.set(15.0)
    later = snap(sim)
    assert later.as_of == datetime(2026, 3, 2, 14, 30, 15, tzinfo=UTC)


def test_gex_matches_an_independent_computation() -> None:
    sim = sim_for()
    assert isinstance(sim.clock, ManualClock)
    sim.clock.set(6)  # after the block, so effective OI differs from settled
    s = snap(sim)
    m = sim.markets["SPY"]
    spot = s.underlying_price
    now = m.time_at(m.tick)
    expected: dict[float, list[float]] = {}
    for i, c in enumerate(m.chain.contracts):
        t = (m.chain.closes[c.expiry] - now).total_seconds() / YEAR_S
        if t <= 0:
            continue
        vol = _smile(m.chain.atm_iv, spot, c.strike, t)
        sd = vol * math.sqrt(t)
        d2 = (math.log(spot / c.strike) + (RATE - vol * vol / 2) * t) / sd
        pdf = math.exp(-d2 * d2 / 2) / math.sqrt(2 * math.pi)
        gamma = c.strike * math.exp(-RATE * t) * pdf / (spot * spot * sd)
        oi = max(0, round(c.settled + m.book.change[i]))
        acc = expected.setdefault(c.strike, [0.0, 0.0])
        acc[0 if c.call else 1] += gamma * oi * 100 * spot**2 * 0.01
    assert [r.strike for r in s.strikes] == sorted(expected)
    for r in s.strikes:
        call, put = expected[r.strike]
        assert math.isclose(r.call_gex or 0, call, rel_tol=1e-9, abs_tol=1e-9)
        assert math.isclose(r.put_gex or 0, -put, rel_tol=1e-9, abs_tol=1e-9)
    total = math.fsum(c - p for c, p in expected.values())
    assert math.isclose(s.live_net_gex, total, rel_tol=1e-9)


def _smile(atm: float, spot: float, k: float, t: float) -> float:
    # the smile is part of the model's inputs, not of the GEX math under test
    from gex_alertd.sources.simulator.chain import smile_vol

    return smile_vol(atm, spot, k, t)


def test_block_shows_in_effective_oi_and_change_not_in_settled() -> None:
    sim = sim_for()
    assert isinstance(sim.clock, ManualClock)
    before = {r.strike: r for r in snap(sim).strikes}
    settled0 = sim.body("exposure", "SPY", None)
    sim.clock.set(5)
    after = {r.strike: r for r in snap(sim).strikes}
    oi_after, oi_before = after[590.0].put_oi, before[590.0].put_oi
    assert oi_after is not None and oi_before is not None
    assert oi_after - oi_before >= 30000 * 0.8
    assert (after[590.0].put_oi_change or 0) >= 30000 * 0.8
    volume = after[590.0].put_volume
    assert volume is not None and volume >= 30000
    settled = msgspec.json.decode(sim.body("exposure", "SPY", None))
    assert settled["expiration"] is None and "net_gex" in settled and "gamma_flip" in settled
    row = next(r for r in settled["strikes"] if r["strike"] == 590.0)
    first = next(r for r in msgspec.json.decode(settled0)["strikes"] if r["strike"] == 590.0)
    assert row["put_oi"] == first["put_oi"]  # settled OI is frozen for the session
    assert row["put_oi"] < after[590.0].put_oi
    # the rows of the two endpoints carry the same fields
    assert set(row) == set(msgspec.structs.asdict(after[590.0]))


def test_oi_change_null_without_prior_settled() -> None:
    sim = sim_for()
    m = sim.market("SPY")
    new = [c for c in m.chain.contracts if not c.has_settled]
    assert new  # a few contracts listed today
    # a strike whose only contract on that side is new has a null change
    for r in snap(sim).strikes:
        side = [c for c in m.chain.contracts if c.strike == r.strike and c.call]
        if side and not any(c.has_settled for c in side):
            assert r.call_oi_change is None
        elif side:
            assert r.call_oi_change is not None


def test_expiry_filter() -> None:
    sim = sim_for()
    m = sim.market("SPY")
    front = m.chain.expiries[0].isoformat()
    whole, one = snap(sim), snap(sim, expiry=front)
    assert one.expiry == front and whole.expiry is None
    assert len(one.strikes) < len(whole.strikes)
    assert one.live_net_gex != whole.live_net_gex
    assert math.isclose(one.live_net_gex, sum(r.net_gex or 0 for r in one.strikes), rel_tol=1e-9)
    with pytest.raises(SimError) as exc:
        sim.body("flow", "SPY", "2026-01-02")
    assert exc.value.status == 404 and front in exc.value.message
    with pytest.raises(SimError) as exc:
        sim.check_expiry("2026-13-01")
    assert exc.value.status == 400
    with pytest.raises(SimError) as exc:
        sim.check_symbol("ZZZZ")
    assert exc.value.status == 404
    with pytest.raises(SimError) as exc:
        sim.check_symbol("SP Y!")
    assert exc.value.status == 400


def test_demo_scenario_makes_all_three_alert_kinds() -> None:
    """What the example config's rules see when polling every 2 s (first snapshot never fires),
    up to the wall and drift steps at 40 s (tests/simulator/test_level_steps.py covers them)."""
    sim = make_simulator(SimulatorOptions(cache_s=1, scenario="demo"), None, ManualClock())
    assert isinstance(sim.clock, ManualClock)
    prev: dict[str, FlowGex] = {}
    seen: dict[str, list[tuple[int, str]]] = {"flip": [], "sign": [], "oi": []}
    for t in range(0, 39, 2):
        sim.clock.set(t)
        for sym in ("SPY", "QQQ", "IWM"):
            s = snap(sim, sym)
            p = prev.get(sym)
            prev[sym] = s
            if p is None:
                continue
            if s.flip is not None and p.flip is not None:
                if (s.underlying_price > s.flip) != (p.underlying_price > p.flip):
                    seen["flip"].append((t, sym))
            if s.live_net_gex_label != p.live_net_gex_label:
                seen["sign"].append((t, sym))
            old = {r.strike: r for r in p.strikes}
            for r in s.strikes:
                q = old.get(r.strike)
                near = abs(r.strike / s.underlying_price - 1) <= 0.05
                if q and near and abs((r.call_oi or 0) - (q.call_oi or 0)) >= 5000:
                    seen["oi"].append((t, sym))
    assert ("SPY" in {s for _, s in seen["flip"]}) and all(t >= 10 for t, _ in seen["flip"])
    assert [s for _, s in seen["sign"]] == ["QQQ"]
    assert [s for _, s in seen["oi"]] == ["IWM"]
    assert max(t for v in seen.values() for t, _ in v) <= 40


def test_scenario_start_is_used_for_as_of() -> None:
    sc = loads_scenario("start: 2026-06-01T13:45:00Z\n")
    sim = make_simulator(SimulatorOptions(cache_s=0), sc, ManualClock())
    assert snap(sim).as_of == datetime(2026, 6, 1, 13, 45, tzinfo=UTC)


def test_unknown_symbols_faults_by_duration_and_min_oi() -> None:
    sim = sim_for(
        scenario="""
unknown_symbols: [nope]
events:
  - {at: 5s, do: fault, kind: error, status: 500, duration: 10s, symbol: spy}
"""
    )
    clock = sim.clock
    assert isinstance(clock, ManualClock)
    with pytest.raises(SimError) as exc:
        sim.check_symbol("nope")
    assert exc.value.status == 404
    assert sim.take_fault("SPY") is None
    clock.set(5)
    assert sim.take_fault("QQQ") is None  # only SPY is affected
    assert all(sim.take_fault("SPY") is not None for _ in range(5))  # every request in window
    clock.set(15)
    assert sim.take_fault("SPY") is None
    full = msgspec.json.decode(sim.body("exposure", "SPY", None))["strikes"]
    big = msgspec.json.decode(sim.body("exposure", "SPY", None, min_oi=20000))["strikes"]
    assert 0 < len(big) < len(full)
    assert all(r["call_oi"] + r["put_oi"] >= 20000 for r in big)


def test_effective_oi_never_negative_through_a_session() -> None:
    sim = sim_for(cache_s=0)
    clock = sim.clock
    assert isinstance(clock, ManualClock)
    for t in range(0, 600, 60):
        clock.set(t)
        for r in snap(sim, "IWM").strikes:
            assert (r.call_oi or 0) >= 0 and (r.put_oi or 0) >= 0
    book = sim.markets["IWM"].book
    assert all(book.effective(i) >= 0 for i in range(len(book.settled)))
    assert sum(book.volume) > 1000  # prints did happen


def test_0dte_expires_at_the_close() -> None:
    sim = sim_for(scenario="tick_s: 60\nsymbols: {SPY: {trades_per_s: 0}}\n")
    clock = sim.clock
    assert isinstance(clock, ManualClock)
    m = sim.market("SPY")
    front = m.chain.expiries[0].isoformat()
    assert m.chain.expiries[0] == clock.start.date()  # a Monday session: 0DTE is today
    assert snap(sim, expiry=front).strikes
    clock.set(6.5 * 3600 + 60)  # 16:01 New York
    with pytest.raises(SimError) as exc:
        sim.body("flow", "SPY", front)
    assert exc.value.status == 404
    after = snap(sim)
    assert len(after.strikes) == 200 and after.flip is not None


@pytest.mark.parametrize("seed", [1, 7, 42])
def test_cross_flip_crosses_both_ways(seed: int) -> None:
    syms = ("SPY", "QQQ", "IWM", "SPX")
    events = "".join(
        f"  - {{at: 5s, do: cross_flip, symbol: {s}}}\n"
        f"  - {{at: 10s, do: cross_flip, symbol: {s}, side: above, gap_pct: 0.2}}\n"
        for s in syms
    )
    sim = sim_for(seed=seed, scenario="events:\n" + events)
    clock = sim.clock
    assert isinstance(clock, ManualClock)
    sides: dict[str, list[bool]] = {s: [] for s in syms}
    for t in (0, 5, 10):
        clock.set(t)
        for s in syms:
            g = snap(sim, s)
            assert g.flip is not None, (s, t)
            sides[s].append(g.underlying_price > g.flip)
    assert all(v == [True, False, True] for v in sides.values()), sides
