"""The bootstrap, the random baseline and the regime volatility."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gex_alertd.outcomes.horizons import et_hours
from gex_alertd.outcomes.measure import TRADING_YEAR_S
from gex_alertd.outcomes.paths import SpotPath
from gex_alertd.outcomes.regime import regime_vol
from gex_alertd.outcomes.stats import (
    Moment,
    baseline_moments,
    bootstrap_mean_ci,
    rng_for,
    summarize,
)
from tests.outcomes.test_measure import MIN, MONDAY, et


def test_bootstrap_interval_is_deterministic_for_a_seed() -> None:
    values = np.random.default_rng(7).normal(0.1, 1.0, 300)
    a = bootstrap_mean_ci(values, rng_for(42, "alerts", "r", "5m"))
    b = bootstrap_mean_ci(values, rng_for(42, "alerts", "r", "5m"))
    c = bootstrap_mean_ci(values, rng_for(43, "alerts", "r", "5m"))
    assert a is not None and a == b
    assert a != c
    lo, hi = a
    assert lo < values.mean() < hi
    # the percentile interval of the mean is about +-1.96 standard errors wide
    se = values.std(ddof=1) / math.sqrt(len(values))
    assert hi - lo == pytest.approx(2 * 1.96 * se, rel=0.15)
    assert bootstrap_mean_ci(np.array([1.0]), rng_for(0)) is None


def test_summary_figures() -> None:
    s = summarize([1.0, -2.0, 3.0, 4.0], rng_for(0))
    assert (s.n, s.hit_rate, s.mean, s.median, s.mean_abs) == (4, 0.75, 1.5, 2.0, 2.5)
    assert s.ci_low is not None and s.ci_high is not None and s.ci_low <= 1.5 <= s.ci_high
    assert summarize([], rng_for(0)).n == 0


def test_baseline_excludes_the_alerts_own_moments_and_matches_hours() -> None:
    day = et(*MONDAY, 9, 30)
    t = np.array([day + i * MIN for i in range(390)], dtype=np.int64)  # the whole session
    hours = et_hours(t)
    alerts_at = [et(*MONDAY, 10, m) for m in (0, 1, 2, 3)] + [et(*MONDAY, 14, 7)]
    alerts = [Moment(("SPY", None), a, 1, int(et_hours(np.array([a]))[0])) for a in alerts_at]
    own = np.array(alerts_at, dtype=np.int64)
    drawn = baseline_moments(alerts, {("SPY", None): (t, hours)}, {("SPY", None): own}, 5000,
                             rng_for(1, "baseline", "r"))  # fmt: skip
    assert len(drawn) == 5000
    picked = {m.at_ms for m in drawn}
    assert not picked & set(alerts_at)
    assert {int(et_hours(np.array([m.at_ms]))[0]) for m in drawn} == {10, 14}
    # every other minute of those two hours is drawn at some point (120 - 5 candidates)
    assert len(picked) == 115
    again = baseline_moments(alerts, {("SPY", None): (t, hours)}, {("SPY", None): own}, 5000,
                             rng_for(1, "baseline", "r"))  # fmt: skip
    assert again == drawn


def test_baseline_skips_draws_without_candidates() -> None:
    a = Moment(("QQQ", None), 0, -1, 3)
    assert baseline_moments([a], {}, {}, 10, rng_for(0)) == []
    assert baseline_moments([], {}, {}, 10, rng_for(0)) == []


def test_regime_vol_splits_returns_by_net_gex_sign_within_a_day() -> None:
    t0 = et(*MONDAY, 10, 0)
    n = 61
    times = [t0 + i * MIN for i in range(n)] + [et(2026, 5, 12, 10, 0)]
    spots = [100.0 * math.exp(0.001 * (i % 2)) for i in range(n)] + [200.0]  # night jump
    nets = [1.0 if i < 30 else -1.0 for i in range(n)] + [-1.0]
    nets[-2] = -1.0
    spots_neg = list(spots)
    for i in range(30, n):  # the negative half moves twice as much
        spots_neg[i] = 100.0 * math.exp(0.002 * (i % 2))
    g = regime_vol(SpotPath.of(times, spots_neg, nets), "SPY", None)
    assert g.positive_returns == 30 and g.negative_returns == 30
    assert g.positive_hours == pytest.approx(0.5) and g.negative_hours == pytest.approx(0.5)
    pos_expected = [math.log(spots_neg[i + 1] / spots_neg[i]) for i in range(30)]
    neg_expected = [math.log(spots_neg[i + 1] / spots_neg[i]) for i in range(30, 60)]

    def vol(r: list[float]) -> float:
        return 100 * math.sqrt(sum(x * x for x in r) * TRADING_YEAR_S / 1800)

    assert g.positive_vol_pct == pytest.approx(vol(pos_expected), rel=1e-12)
    assert g.negative_vol_pct == pytest.approx(vol(neg_expected), rel=1e-12)
    # and the overnight jump counts for neither
    assert g.negative_vol_pct is not None and g.positive_vol_pct is not None
    assert g.negative_vol_pct > g.positive_vol_pct
