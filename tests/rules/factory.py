"""Synthetic Flow GEX snapshots for rule tests and benchmarks (no simulator needed)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from gex_alertd.model import FlowGex, StrikeRow

T0 = datetime(2026, 5, 11, 14, 0, tzinfo=UTC)  # a Monday, 10:00 New York


def snap(
    *,
    symbol: str = "SPY",
    at: datetime | int = 0,
    spot: float = 500.0,
    net: float = 1e9,
    flip: float | None = 495.0,
    status: str | None = "available",
    strikes: list[StrikeRow] | None = None,
    expiry: str | None = None,
) -> FlowGex:
    as_of = T0 + timedelta(seconds=15 * at) if isinstance(at, int) else at
    return FlowGex(
        symbol=symbol,
        as_of=as_of,
        underlying_price=spot,
        live_net_gex=net,
        live_net_gex_label="positive" if net >= 0 else "negative",
        live_gamma_flip=flip,
        gamma_flip_status=status,
        expiry=expiry,
        strikes=strikes or [],
    )


def row(
    strike: float, call_oi: float | None = 1000.0, put_oi: float | None = 1000.0, **kw: float | None
) -> StrikeRow:
    return StrikeRow(strike=strike, call_oi=call_oi, put_oi=put_oi, **kw)


def chain(
    spot: float, n: int = 200, step: float = 1.0, rng: random.Random | None = None
) -> list[StrikeRow]:
    """A 200-strike chain around spot with realistic, compressible numbers."""
    rng = rng or random.Random(1)
    first = round(spot - n * step / 2)
    rows = []
    for i in range(n):
        k = first + i * step
        call_oi = float(rng.randrange(0, 50_000))
        put_oi = float(rng.randrange(0, 50_000))
        call_gex = round(rng.uniform(0, 5e8), 2)
        put_gex = -round(rng.uniform(0, 5e8), 2)
        rows.append(
            StrikeRow(
                strike=k,
                call_gex=call_gex,
                put_gex=put_gex,
                net_gex=call_gex + put_gex,
                call_oi=call_oi,
                put_oi=put_oi,
                call_volume=float(rng.randrange(0, 10_000)),
                put_volume=float(rng.randrange(0, 10_000)),
                call_oi_change=float(rng.randrange(-2000, 2000)),
                put_oi_change=float(rng.randrange(-2000, 2000)),
            )
        )
    return rows
