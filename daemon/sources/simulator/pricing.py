"""Black-Scholes gamma and price, and the dollar-GEX convention (flowgex-api.md).

Pure Python on purpose: the simulator runs inside the daemon's process and numpy would cost
tens of MB of RSS for a few thousand contracts per tick.
"""

from __future__ import annotations

import math

_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SQRT2 = math.sqrt(2.0)
MIN_T = 5.0 / (365.0 * 24.0 * 60.0)  # 5 minutes: keeps expiring gamma finite


def norm_pdf(x: float) -> float:
    return _INV_SQRT_2PI * math.exp(-0.5 * x * x)


def norm_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / _SQRT2))


def d1(spot: float, strike: float, t: float, vol: float, r: float = 0.0) -> float:
    sd = vol * math.sqrt(t)
    return (math.log(spot / strike) + (r + 0.5 * vol * vol) * t) / sd


def bs_gamma(spot: float, strike: float, t: float, vol: float, r: float = 0.0) -> float:
    """Gamma of one option on one share (calls and puts share it; no dividends)."""
    sd = vol * math.sqrt(t)
    x = (math.log(spot / strike) + (r + 0.5 * vol * vol) * t) / sd
    return _INV_SQRT_2PI * math.exp(-0.5 * x * x) / (spot * sd)


def bs_price(call: bool, spot: float, strike: float, t: float, vol: float, r: float = 0.0) -> float:
    sd = vol * math.sqrt(t)
    x1 = (math.log(spot / strike) + (r + 0.5 * vol * vol) * t) / sd
    x2 = x1 - sd
    disc = strike * math.exp(-r * t)
    if call:
        return spot * norm_cdf(x1) - disc * norm_cdf(x2)
    return disc * norm_cdf(-x2) - spot * norm_cdf(-x1)


def gex_dollars(gamma: float, oi: float, spot: float) -> float:
    """Dollar gamma per 1% move for `oi` contracts of 100 shares (sign applied by the caller)."""
    return gamma * oi * 100.0 * spot * spot * 0.01


def gex_factor(spot: float) -> float:
    """The part of gex_dollars that is the same for every contract of a snapshot."""
    return 100.0 * spot * spot * 0.01
