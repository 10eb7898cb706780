"""repositioning: the live profile has moved away from the day's settled profile.

The settled profile (`GET /v1/exposure/gex`, settled OI, frozen all session) is fetched at the
edge, once per trading day, and handed to the rule on the snapshot (`attach_settled`); this
module never does I/O. Per strike present in both profiles and within `within_pct` of spot
(the edge is inside), change = |live call GEX - settled call GEX| + |live put GEX - settled put
GEX| (signs as served; a null side is not compared). Bad ("repositioned") when
  - the summed change exceeds `min_pct` % of the settled total (sum of |call| + |put| GEX of the
    same strikes), or
  - any one strike's change exceeds `min_strike_gex` dollars.
Fires when it turns bad; back under both thresholds re-arms it. Edge cases:
  - no settled profile, or one from another exchange day than the snapshot (yesterday's, before
    the morning settle is published): neither fires nor resets;
  - a new exchange day starts un-repositioned: a profile already far off at the day's first
    compared snapshot fires (the rule's very first snapshot still never does);
  - a strike in only one of the profiles is not compared (the served strike set moves with
    spot); no common strike, or a settled total of 0, gives no `min_pct` verdict.
Details list the `top` strikes by change (settled, live, change per side).
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import numpy as np

from gex_alertd.model import STRIKE_FIELDS, FlowGex, as_ms, strike_matrix
from gex_alertd.rules.base import Fired, RuleBase, RuleType, fmt_money
from gex_alertd.rules.columns import columns
from gex_alertd.rules.levels import in_window

_EXCHANGE_TZ = ZoneInfo("America/New_York")
_SETTLED = "_settled"  # key in a snapshot's __dict__


class Settled(msgspec.Struct, array_like=True, frozen=True):
    """The day's settled profile as the rule needs it: columns, NaN for a null value."""

    day: str  # exchange day of its as_of (yyyy-mm-dd, America/New_York)
    as_of_ms: int
    strike: list[float]
    call_gex: list[float]
    put_gex: list[float]
    # as served (never call + put: the sign convention differs between sources); for the live
    # page's overlay. Empty in profiles cached before it was kept.
    net_gex: list[float] = []


def settled_from(snap: FlowGex) -> Settled:
    """The profile of a decoded `/v1/exposure/gex` response (its rows as served)."""
    cols = columns(snap)
    return Settled(
        exchange_day(snap),
        as_ms(snap.as_of),
        cols.strike.tolist(),
        cols.gex[0].tolist(),
        cols.gex[1].tolist(),
        _served_net(snap),
    )


def _served_net(snap: FlowGex) -> list[float]:
    # the decoder's matrix holds every served column; a profile built another way keeps none
    m = strike_matrix(snap)
    return [] if m is None else m[STRIKE_FIELDS.index("net_gex")].tolist()


def exchange_day(snap: FlowGex) -> str:
    return snap.as_of.astimezone(_EXCHANGE_TZ).date().isoformat()


def attach_settled(snap: FlowGex, settled: Settled | None) -> None:
    snap.__dict__[_SETTLED] = settled


def settled_of(snap: FlowGex) -> Settled | None:
    found: Settled | None = snap.__dict__.get(_SETTLED)
    return found


class Repositioning(RuleBase, tag="repositioning", kw_only=True):
    min_pct: float | None = None
    min_strike_gex: float | None = None
    within_pct: float | None = None
    top: int = 5

    def problems(self) -> list[tuple[str, str]]:
        out = super().problems()
        if self.min_pct is None and self.min_strike_gex is None:
            out.append(("min_pct", "set min_pct and/or min_strike_gex (a threshold is required)"))
        if self.min_pct is not None and self.min_pct <= 0:
            out.append(
                ("min_pct", f"must be > 0 (percent of the settled total), got {self.min_pct}")
            )
        if self.min_strike_gex is not None and self.min_strike_gex <= 0:
            out.append(("min_strike_gex", f"must be > 0 (dollars), got {self.min_strike_gex}"))
        if self.within_pct is not None and self.within_pct <= 0:
            out.append(("within_pct", f"must be > 0 (percent of spot), got {self.within_pct}"))
        if not 1 <= self.top <= 50:
            out.append(("top", f"must be within 1..50, got {self.top}"))
        return out


class RepoState(msgspec.Struct, array_like=True):
    day: str | None = None  # the exchange day `over` belongs to
    over: bool = False


class Compared(msgspec.Struct, frozen=True):
    strike: np.ndarray
    live: np.ndarray  # (2, n) call, put
    settled: np.ndarray  # (2, n)
    change: np.ndarray  # (n,)
    settled_total: float


def compare(rule: Repositioning, snap: FlowGex, settled: Settled) -> Compared:
    cols = columns(snap)
    common, li, si = np.intersect1d(
        cols.strike, np.asarray(settled.strike, dtype=np.float64), return_indices=True
    )
    keep = in_window(common, snap.underlying_price, rule.within_pct)
    li, si = li[keep], si[keep]
    live = cols.gex[:, li]
    sett = np.array([settled.call_gex, settled.put_gex], dtype=np.float64)[:, si]
    change = np.nansum(np.abs(live - sett), axis=0)  # a null side (NaN) adds nothing
    both = ~(np.isnan(live) | np.isnan(sett))
    total = float(np.abs(np.where(both, sett, 0.0)).sum())
    return Compared(common[keep], live, sett, change, total)


def _top(c: Compared, n: int) -> list[dict[str, Any]]:
    def num(x: float) -> float | None:
        return None if x != x else float(x)

    order = np.argsort(-c.change, kind="stable")[:n]
    return [
        {
            "strike": float(c.strike[i]),
            "settled_call_gex": num(c.settled[0, i]),
            "live_call_gex": num(c.live[0, i]),
            "settled_put_gex": num(c.settled[1, i]),
            "live_put_gex": num(c.live[1, i]),
            "change": float(c.change[i]),
        }
        for i in order
        if c.change[i] > 0
    ]


def evaluate(
    rule: Repositioning, state: RepoState | None, snap: FlowGex, prev: FlowGex | None
) -> tuple[RepoState, list[Fired]]:
    old = state if state is not None else RepoState()
    settled = settled_of(snap)
    day = exchange_day(snap)
    if settled is None or settled.day != day:
        return old, []
    c = compare(rule, snap, settled)
    changed = float(c.change.sum())
    pct = 100.0 * changed / c.settled_total if c.settled_total > 0 else None
    biggest = float(c.change.max()) if c.change.size else 0.0
    by_total = rule.min_pct is not None and pct is not None and pct > rule.min_pct
    by_strike = rule.min_strike_gex is not None and biggest > rule.min_strike_gex
    over = by_total or by_strike
    was = old.over if old.day == day else False
    new = RepoState(day, over)
    if not over or was or state is None:
        return new, []
    why = f"{pct:.1f} % of the settled GEX" if by_total and pct is not None else (
        f"{fmt_money(biggest)} at one strike"
    )  # fmt: skip
    summary = (
        f"{snap.symbol} repositioned vs the morning's settled profile: {why} "
        f"(spot {snap.underlying_price:.2f})"
    )
    details = {
        "changed_gex": changed,
        "settled_gex": c.settled_total,
        "changed_pct": pct,
        "max_strike_change": biggest,
        "min_pct": rule.min_pct,
        "min_strike_gex": rule.min_strike_gex,
        "within_pct": rule.within_pct,
        "spot": snap.underlying_price,
        "settled_as_of_ms": settled.as_of_ms,
        "top_strikes": _top(c, rule.top),
    }
    return new, [Fired(summary, details)]


RULE = RuleType(Repositioning, RepoState, evaluate, needs_settled=True)
