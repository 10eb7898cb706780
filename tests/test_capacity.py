"""capacity: the interval each watch target really gets from the request budget, and `check`
telling the user when that is not the interval they asked for."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gex_alertd import capacity, config
from gex_alertd.config import WatchTarget


def targets(*intervals: float) -> list[WatchTarget]:
    return [WatchTarget(f"S{i}", None, iv, 1.0) for i, iv in enumerate(intervals)]


def test_no_overload_means_no_lag_and_every_target_gets_its_interval():
    c = capacity.plan(targets(15, 15, 30, 1), 120)
    assert not c.overloaded and c.lag_s == 0
    assert c.achieved == c.requested == {"S0": 15, "S1": 15, "S2": 30, "S3": 1}
    assert c.demand_per_min == pytest.approx(4 + 4 + 2 + 60)


def test_demand_exactly_at_the_budget_is_not_an_overload():
    c = capacity.plan(targets(1, 1), 120)  # 2/s asked, 2/s allowed
    assert not c.overloaded and c.lag_s == 0


def test_2000_symbols_at_1s_on_120_per_min_are_each_polled_every_1000s():
    c = capacity.plan(targets(*[1.0] * 2000), 120)
    assert c.overloaded
    assert c.demand_per_min == pytest.approx(120_000)
    # 2 requests/s shared by 2,000 targets: each one every 1,000 s
    assert c.lag_s == pytest.approx(999, rel=1e-9)
    assert all(got == pytest.approx(1000, rel=1e-9) for got in c.achieved.values())


def test_mixed_intervals_share_one_lag_that_spends_exactly_the_budget():
    intervals = [0.5] * 300 + [1.0] * 500 + [15.0] * 200 + [60.0] * 7
    c = capacity.plan(targets(*intervals), 600)
    assert c.overloaded
    assert math.fsum(1 / a for a in c.achieved.values()) == pytest.approx(600 / 60, rel=1e-9)
    for key, got in c.achieved.items():
        assert got - c.requested[key] == pytest.approx(c.lag_s)


def test_the_same_symbol_with_an_expiry_is_a_target_of_its_own():
    c = capacity.plan(
        [WatchTarget("SPX", None, 1.0, 0.0), WatchTarget("SPX", "2026-05-15", 1.0, 0.0)], 60
    )
    assert set(c.achieved) == {"SPX", "SPX:2026-05-15"}
    assert c.achieved["SPX"] == pytest.approx(2.0)  # 1/s for two targets that each ask 1/s


finite_intervals = st.floats(min_value=0.01, max_value=86_400, allow_nan=False)


@given(
    intervals=st.lists(finite_intervals, min_size=1, max_size=60),
    per_min=st.floats(min_value=0.1, max_value=100_000, allow_nan=False),
)
def test_the_lag_makes_the_achieved_rates_fit_the_budget(intervals, per_min):
    c = capacity.plan(targets(*intervals), per_min)
    demand = math.fsum(1 / i for i in intervals)
    if not math.isclose(demand, per_min / 60, rel_tol=1e-9):  # a tie may round either way
        assert c.overloaded == (demand > per_min / 60)
    assert c.lag_s >= 0 and (c.lag_s > 0) == c.overloaded
    for key, got in c.achieved.items():
        assert got == c.requested[key] + c.lag_s
    got_rate = math.fsum(1 / a for a in c.achieved.values())
    if c.overloaded:
        assert got_rate == pytest.approx(per_min / 60, rel=1e-6)
    else:
        assert got_rate <= per_min / 60 * (1 + 1e-12)


any_float = st.floats(allow_nan=True, allow_infinity=True)


@given(intervals=st.lists(any_float, max_size=8), per_min=any_float, cache_s=any_float)
def test_no_number_makes_it_raise(intervals, per_min, cache_s):
    # config.parse accepts NaN and inf intervals today (`nan <= 0` is false): never crash on them
    c = capacity.plan(targets(*intervals), per_min, cache_s=cache_s)
    assert capacity.describe(c)
    capacity.cache_note(c)
    capacity.log_fields(c)


def test_describe_an_overload_names_the_setting_and_the_interval_really_got():
    text = capacity.describe(capacity.plan(targets(*[1.0] * 2000), 120))
    assert text == (
        "2,000 targets ask for 120,000 requests/min; the key allows 120/min "
        "(source.requests_per_min): each target will be polled every ~1,000 s (~17 min) "
        "instead of 1 s; raise source.requests_per_min (if the plan allows) or "
        "watch.interval_s, or watch fewer symbols"
    )


def test_describe_mixed_intervals_gives_the_ranges():
    text = capacity.describe(capacity.plan(targets(*[1.0] * 100, *[30.0] * 100), 60))
    assert "targets will be polled every ~" in text and "instead of 1–30 s" in text


def test_describe_a_plan_that_fits():
    text = capacity.describe(capacity.plan(targets(15, 15, 30), 120))
    assert text == (
        "3 targets ask for 10 requests/min of the 120/min budget "
        "(source.requests_per_min, 8.33% used): each polled every 15–30 s as configured"
    )
    assert capacity.describe(capacity.plan([], 120)) == "no watch targets: nothing will be polled"


def test_the_cache_note_counts_intervals_really_got_not_asked():
    fast = capacity.plan(targets(1, 5, 15, 60), 120)
    assert fast.faster_than_cache == ("S0", "S1")
    note = capacity.cache_note(fast)
    assert note is not None
    assert note.startswith("2 of 4 targets (S0, S1) will be polled every 1–5 s")
    assert "~15 s cache" in note
    # asked every second, but the budget stretches them past the cache: nothing to note
    assert capacity.cache_note(capacity.plan(targets(*[1.0] * 2000), 120)) is None
    assert capacity.cache_note(capacity.plan(targets(1), 120, cache_s=0)) is None


def test_the_cache_is_the_providers_or_the_simulators_in_wall_seconds():
    flowgex = config.parse({"source": {"kind": "flowgex", "api_key": "k"}})
    assert capacity.source_cache_s(flowgex) == capacity.PROVIDER_CACHE_S == 15
    sim = config.parse({"source": {"simulator": {"cache_s": 10, "speed": 4}}})
    assert capacity.source_cache_s(sim) == 2.5


def test_log_fields_stay_small_with_thousands_of_targets():
    intervals = [1.0] * 1999 + [30.0]
    fields = capacity.log_fields(capacity.plan(targets(*intervals), 120))
    assert len(fields) < 20
    assert fields["overloaded"] is True and fields["targets"] == 2000
    assert fields["fastest_target"] == "S0" and fields["fastest_interval_s"] == 1.0
    assert fields["slowest_target"] == "S1999" and fields["slowest_interval_s"] == 30.0
    fastest, slowest = fields["fastest_achieved_s"], fields["slowest_achieved_s"]
    assert isinstance(fastest, float) and isinstance(slowest, float)
    assert slowest > fastest > 900


# --- `gex-alertd check` --------------------------------------------------------------------------


def check_offline(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return subprocess.run(
        [sys.executable, "-m", "gex_alertd", "check", "--offline", "--config", str(p)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_check_warns_when_the_budget_stretches_every_interval(tmp_path):
    symbols = ", ".join(f"S{i}" for i in range(2000))
    proc = check_offline(tmp_path, f"watch: {{interval_s: 1, symbols: [{symbols}]}}\n")
    assert proc.returncode == 0, proc.stderr  # a valid config that runs slower than asked
    assert "config " in proc.stdout and ": ok (2000 watch entries" in proc.stdout
    warning = next(line for line in proc.stderr.splitlines() if line.startswith("warning:"))
    assert "source.requests_per_min" in warning
    assert "every ~1,000 s (~17 min) instead of 1 s" in warning


def test_check_prints_the_plan_when_the_budget_suffices(tmp_path):
    proc = check_offline(
        tmp_path,
        "source: {kind: flowgex, api_key: k, requests_per_min: 60}\n"
        "watch: {interval_s: 15, symbols: [SPY, {symbol: QQQ, interval_s: 5}]}\n",
    )
    assert proc.returncode == 0, proc.stderr
    assert "warning:" not in proc.stderr
    assert (
        "poll plan: 2 targets ask for 16 requests/min of the 60/min budget "
        "(source.requests_per_min, 26.7% used)"
    ) in proc.stdout
    assert "note: 1 of 2 targets (QQQ) will be polled every 5 s, faster than" in proc.stderr
