"""Per-strike GEX rows, net, label and flip, and the wire encoding (flowgex-api.md).

Convention: call GEX positive, put GEX negative, `net_gex = call_gex + put_gex`, dollars per
1% move (`gamma * OI * 100 * spot^2 * 0.01`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import msgspec

from gex_alertd.model import FEEDS
from gex_alertd.sources.simulator.pricing import gex_factor

ENDPOINT_VERSION = "flow-gex-sim/1"


class WireRow(msgspec.Struct, array_like=False):
    strike: float
    call_gex: float
    put_gex: float
    net_gex: float
    call_oi: int
    put_oi: int
    call_volume: int
    put_volume: int
    call_oi_change: int | None
    put_oi_change: int | None


class FlowGexBody(msgspec.Struct):
    symbol: str
    as_of: str
    underlying_price: float
    expiry: str | None
    live_net_gex: float
    live_net_gex_label: str
    live_gamma_flip: float | None
    gamma_flip_status: str
    strikes: list[WireRow]
    endpoint_version: str
    data_as_of: dict[str, str | None]


class ExposureGexBody(msgspec.Struct):
    """`/v1/exposure/gex` names its headline fields as the SDK's GexResponse does."""

    symbol: str
    as_of: str
    underlying_price: float
    expiration: str | None
    net_gex: float
    net_gex_label: str
    gamma_flip: float | None
    gamma_flip_status: str
    strikes: list[WireRow]
    endpoint_version: str
    data_as_of: dict[str, str | None]


@dataclass(slots=True, frozen=True)
class Leg:
    """One contract's inputs to a snapshot."""

    strike: float
    call: bool
    gamma: float
    oi: int
    volume: int
    oi_change: int | None


def strike_rows(legs: Sequence[Leg], spot: float) -> list[WireRow]:
    """Aggregate legs per strike (ascending). A side's oi_change is null only when no
    contract at that strike and side has a prior settled figure."""
    factor = gex_factor(spot)
    acc: dict[float, list] = {}
    for leg in legs:
        a = acc.get(leg.strike)
        if a is None:
            a = acc[leg.strike] = [0.0, 0.0, 0, 0, 0, 0, None, None]
        side = 0 if leg.call else 1
        a[side] += leg.gamma * leg.oi
        a[2 + side] += leg.oi
        a[4 + side] += leg.volume
        if leg.oi_change is not None:
            a[6 + side] = (a[6 + side] or 0) + leg.oi_change
    rows = []
    for k in sorted(acc):
        cg, pg, coi, poi, cv, pv, cc, pc = acc[k]
        call_gex = cg * factor
        put_gex = -(pg * factor)
        rows.append(WireRow(k, call_gex, put_gex, call_gex + put_gex, coi, poi, cv, pv, cc, pc))
    return rows


def net_of(rows: Sequence[WireRow]) -> float:
    total = 0.0
    for r in rows:
        total += r.net_gex
    return total


def label_of(net: float) -> str:
    return "negative" if net < 0 else "positive"


def gamma_flip(rows: Sequence[WireRow], spot: float) -> float | None:
    """Where the cumulative per-strike net GEX (ascending strikes) crosses zero, linearly
    interpolated between the two strikes; of several crossings, the one nearest spot."""
    best: float | None = None
    prev_k: float | None = None
    prev_c = 0.0
    cum = 0.0
    for r in rows:
        cum += r.net_gex
        if prev_k is not None and prev_c != 0.0 and (cum == 0.0 or (prev_c < 0.0) != (cum < 0.0)):
            flip = prev_k + (r.strike - prev_k) * (prev_c / (prev_c - cum))
            if best is None or abs(flip - spot) < abs(best - spot):
                best = flip
        prev_k, prev_c = r.strike, cum
    return best


def data_as_of(as_of: str, oi_as_of: str) -> dict[str, str | None]:
    feeds: dict[str, str | None] = dict.fromkeys(FEEDS, as_of)
    feeds["oi_feed"] = oi_as_of  # settled OI is published once per session
    for f in ("futures_feed", "futures_options_feed", "macro_feed"):
        feeds[f] = None  # not simulated
    return feeds
