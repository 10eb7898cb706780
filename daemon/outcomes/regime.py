"""Realized intraday volatility while net GEX is positive vs negative, per stream. Pure.

Each return between consecutive snapshots of the same ET day, at most `max_gap_s` apart, is
classed by the sign of net GEX at its start (exactly 0 counts for neither). Volatility is
annualized over the time actually spent in each regime: 100 * sqrt(sum r^2 * TRADING_YEAR_S /
seconds). Overnight moves and gaps never count.
"""

from __future__ import annotations

import math

import msgspec
import numpy as np

from gex_alertd.outcomes.horizons import et_days
from gex_alertd.outcomes.measure import DEFAULT_MAX_GAP_S, TRADING_YEAR_S
from gex_alertd.outcomes.paths import SpotPath


class RegimeVol(msgspec.Struct, frozen=True):
    symbol: str
    expiry: str | None
    positive_vol_pct: float | None
    negative_vol_pct: float | None
    positive_hours: float
    negative_hours: float
    positive_returns: int
    negative_returns: int


def _vol(r: np.ndarray, seconds: float) -> float | None:
    if seconds <= 0:
        return None
    return 100.0 * math.sqrt(float(np.dot(r, r)) * TRADING_YEAR_S / seconds)


def regime_vol(
    path: SpotPath, symbol: str, expiry: str | None, max_gap_s: float = DEFAULT_MAX_GAP_S
) -> RegimeVol:
    t, spot, net = path
    if len(t) < 2:
        return RegimeVol(symbol, expiry, None, None, 0.0, 0.0, 0, 0)
    dt = np.diff(t) / 1000.0
    days = et_days(t)
    keep = (days[1:] == days[:-1]) & (dt <= max_gap_s) & (dt > 0)
    r = np.diff(np.log(spot))
    pos = keep & (net[:-1] > 0)
    neg = keep & (net[:-1] < 0)
    pos_s, neg_s = float(dt[pos].sum()), float(dt[neg].sum())
    return RegimeVol(
        symbol=symbol,
        expiry=expiry,
        positive_vol_pct=_vol(r[pos], pos_s),
        negative_vol_pct=_vol(r[neg], neg_s),
        positive_hours=pos_s / 3600.0,
        negative_hours=neg_s / 3600.0,
        positive_returns=int(pos.sum()),
        negative_returns=int(neg.sum()),
    )
