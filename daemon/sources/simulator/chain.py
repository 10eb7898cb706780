"""The listed option chain of one symbol: expiries, strike grid, IV smile, settled OI.

Built once per symbol at session open from (seed, symbol, trading date), so a restart with the
same seed rebuilds the same chain.
"""

from __future__ import annotations

import math
import random
import zlib
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

# Opening levels, print rates and OI sizes that look like the real underlyings.
DEFAULT_SPOT = {"SPY": 600.0, "QQQ": 520.0, "IWM": 240.0, "SPX": 6000.0, "NDX": 21000.0}
DEFAULT_IV = {"SPY": 0.14, "QQQ": 0.19, "IWM": 0.22, "SPX": 0.14, "NDX": 0.19}
DEFAULT_OI_SCALE = {"SPY": 1.0, "QQQ": 0.7, "IWM": 0.5, "SPX": 0.6, "NDX": 0.08}
_NICE_STEPS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0)
CLOSE_UTC = time(21, 0)  # 16:00 New York (EST); close enough for a simulator


def symbol_seed(seed: int, symbol: str, salt: str = "") -> int:
    # zlib.crc32, not hash(): str hashes are randomised per process.
    return (seed * 1_000_003) ^ zlib.crc32(f"{symbol}|{salt}".encode())


def default_spot(symbol: str) -> float:
    if symbol in DEFAULT_SPOT:
        return DEFAULT_SPOT[symbol]
    rng = random.Random(zlib.crc32(symbol.encode()))
    return round(math.exp(rng.uniform(math.log(15.0), math.log(800.0))), 2)


def default_iv(symbol: str) -> float:
    if symbol in DEFAULT_IV:
        return DEFAULT_IV[symbol]
    return round(random.Random(zlib.crc32(symbol.encode()) + 1).uniform(0.22, 0.6), 3)


def strike_step(spot: float, count: int) -> float:
    """A listed-looking increment so `count` strikes span about +-15% of spot."""
    raw = spot * 0.30 / count
    for step in _NICE_STEPS:
        if step >= raw * 0.75:
            return step
    return _NICE_STEPS[-1]


def _next_weekday(d: date) -> date:
    while d.weekday() >= 5:
        d += timedelta(days=1)
    return d


def _third_friday(year: int, month: int) -> date:
    d = date(year, month, 15)
    return d + timedelta(days=(4 - d.weekday()) % 7)


def expiry_close(d: date) -> datetime:
    return datetime.combine(d, CLOSE_UTC, tzinfo=UTC)


def listed_expiries(start: datetime) -> list[date]:
    """0DTE, next day, two weeklies (Fridays) and two monthlies (third Fridays)."""
    d0 = _next_weekday(start.date())
    if expiry_close(d0) < start + timedelta(hours=1):
        d0 = _next_weekday(d0 + timedelta(days=1))
    d1 = _next_weekday(d0 + timedelta(days=1))
    fri = d1 + timedelta(days=(4 - d1.weekday()) % 7)
    out = {d0, d1, fri, fri + timedelta(days=7)}
    y, m = d0.year, d0.month
    months = 0
    while months < 2:
        m += 1
        if m > 12:
            y, m = y + 1, 1
        tf = _third_friday(y, m)
        if tf > fri + timedelta(days=7):
            out.add(tf)
            months += 1
    return sorted(out)


@dataclass(slots=True)
class Contract:
    expiry: int  # index into Chain.expiries
    strike: float
    call: bool
    settled: int  # settled OI at the open (yesterday's OCC figure); 0 for new listings
    has_settled: bool  # False: listed today, no prior settled figure (oi_change is null)
    prev_settled: int | None  # the day before's figure (for /v1/exposure day-over-day)


@dataclass(slots=True)
class Chain:
    symbol: str
    expiries: list[date]
    closes: list[datetime]
    strikes: list[float]  # the aggregate grid, ascending
    step: float
    atm_iv: float
    contracts: list[Contract]
    by_expiry: list[list[int]]  # contract indexes per expiry, ascending strike, call first


def smile_vol(atm_iv: float, spot: float, strike: float, t: float) -> float:
    """Equity-style skew: puts (low strikes) richer, a little curvature, short dates richer."""
    m = math.log(strike / spot) / math.sqrt(max(t, 1.0 / 365.0))
    term = 1.0 + 0.25 * math.exp(-t * 60.0)
    vol = atm_iv * term * (1.0 - 0.12 * m + 0.04 * m * m)
    return min(3.0, max(0.05, vol))


def build_chain(
    symbol: str, seed: int, start: datetime, spot: float, atm_iv: float, strikes: int,
    oi_scale: float,
) -> Chain:  # fmt: skip
    rng = random.Random(symbol_seed(seed, symbol, "chain"))
    expiries = listed_expiries(start)
    closes = [expiry_close(d) for d in expiries]
    step = strike_step(spot, strikes)
    centre = round(spot / step) * step
    grid = [round(centre + (i - strikes // 2) * step, 4) for i in range(strikes)]
    grid = [k for k in grid if k > spot * 0.2]
    contracts: list[Contract] = []
    by_expiry: list[list[int]] = []
    big = (2.0, 2.2, 1.0, 1.2, 3.0, 2.4)  # relative size per listed expiry (monthlies biggest)
    for e, close in enumerate(closes):
        t = max((close - start).total_seconds(), 3600.0) / (365.0 * 86400.0)
        last = e == len(closes) - 1
        width = 1.0 if last else min(0.16, 0.04 + 2.5 * atm_iv * math.sqrt(t))
        size = big[e] if e < len(big) else 1.0
        sd = max(0.012, atm_iv * math.sqrt(t) * 1.3)
        idx: list[int] = []
        for k in grid:
            m = math.log(k / spot)
            if not last and abs(m) > width:
                continue
            roundness = 2.2 if k % (step * 10) == 0 else 1.5 if k % (step * 5) == 0 else 1.0
            for call in (True, False):
                # Calls cluster at the money; puts sit lower and wider (downside hedges).
                # With dealers long the calls and short the puts this gives the usual
                # positive-gamma open with the flip a little below spot.
                if call:
                    shape = math.exp(-0.5 * ((m - 0.1 * sd) / sd) ** 2)
                else:
                    shape = math.exp(-0.5 * (m / sd + 1.5) ** 2)
                base = 4000.0 * oi_scale * size * roundness * shape
                oi = int(base * rng.lognormvariate(0.0, 0.35))
                new_listing = e == 0 or rng.random() < 0.02
                if new_listing and e == 0:
                    # 0DTE strikes listed a week ago: most carry OI, a few are brand new
                    new_listing = rng.random() < 0.05
                has = not new_listing
                prev = int(oi * rng.uniform(0.85, 1.1)) if has and rng.random() > 0.05 else None
                idx.append(len(contracts))
                contracts.append(Contract(e, k, call, oi if has else 0, has, prev))
        by_expiry.append(idx)
    return Chain(symbol, expiries, closes, grid, step, atm_iv, contracts, by_expiry)
