"""oi_change: open interest at a strike jumps; one alert per snapshot listing the strikes.

basis `poll`: effective OI against the previous stored snapshot at the same strike. A strike
present on only one side is not compared: the served strike set moves with spot, so a strike
entering or leaving it says nothing about open interest.
basis `day`: the served day-over-day `*_oi_change` (nullable); a strike fires once per
exchange day, when it first crosses the threshold. Strikes already past the threshold in the
first snapshot the rule sees are the baseline, not news.
With both `min_contracts` and `min_pct`, both must hold.
"""

from __future__ import annotations

import math
from typing import Literal, TypedDict
from zoneinfo import ZoneInfo

import msgspec
import numpy as np

from gex_alertd.model import FlowGex, iso_utc
from gex_alertd.rules.base import Fired, RuleBase, RuleType
from gex_alertd.rules.columns import FIELDS, columns

_EXCHANGE_TZ = ZoneInfo("America/New_York")


class OiChange(RuleBase, tag="oi_change", kw_only=True):
    side: Literal["call", "put", "both"] = "both"
    basis: Literal["poll", "day"] = "poll"
    min_contracts: float | None = None
    min_pct: float | None = None
    within_pct: float | None = None

    def problems(self) -> list[tuple[str, str]]:
        out = super().problems()
        if self.min_contracts is None and self.min_pct is None:
            out.append(
                ("min_contracts", "set min_contracts and/or min_pct (a threshold is required)")
            )
        if self.min_contracts is not None and self.min_contracts <= 0:
            out.append(("min_contracts", f"must be > 0 contracts, got {self.min_contracts}"))
        if self.min_pct is not None and self.min_pct <= 0:
            out.append(("min_pct", f"must be > 0 (percent), got {self.min_pct}"))
        if self.within_pct is not None and not 0 < self.within_pct:
            out.append(("within_pct", f"must be > 0 (percent of spot), got {self.within_pct}"))
        return out


class OiState(msgspec.Struct, array_like=True):
    day: str | None = None  # basis day: the exchange day `fired` belongs to
    # basis day: "c|p:strike" keys that fired (or were the baseline); a set, so a snapshot
    # checks its few candidates without rebuilding one from a list
    fired: frozenset[str] = frozenset()


_SIDES = {"call": ("call",), "put": ("put",), "both": ("call", "put")}


def _passes(rule: OiChange, change: float, before: float) -> tuple[bool, float]:
    pct = 100.0 * abs(change) / before if before > 0 else (math.inf if change else 0.0)
    if change == 0:
        return False, pct
    if rule.min_contracts is not None and abs(change) < rule.min_contracts:
        return False, pct
    if rule.min_pct is not None and pct < rule.min_pct:
        return False, pct
    return True, pct


def _window(rule: OiChange, spot: float) -> tuple[float, float]:
    if rule.within_pct is None:
        return -math.inf, math.inf
    half = spot * rule.within_pct / 100.0
    return spot - half, spot + half


class _Hit(TypedDict):
    """A strike that fired, as the alert's details list it."""

    strike: float
    side: str
    before: float
    after: float
    change: float
    change_pct: float | None


def _entry(strike: float, side: str, before: float, after: float, pct: float) -> _Hit:
    return {
        "strike": strike,
        "side": side,
        "before": before,
        "after": after,
        "change": after - before,
        "change_pct": None if math.isinf(pct) else round(pct, 4),
    }


# rows of StrikeColumns.oi / .oi_change per `side` setting
_ROWS = {"call": slice(0, 1), "put": slice(1, 2), "both": slice(0, 2)}


def _inside(rule: OiChange, strike: np.ndarray, spot: float) -> np.ndarray | bool:
    if rule.within_pct is None:
        return True
    lo, hi = _window(rule, spot)
    return (strike >= lo) & (strike <= hi)


# the same rows of the whole view matrix (`StrikeColumns.m`, FIELDS order, put OI right after
# call OI as `StrikeColumns.oi` has them): one view per snapshot, not a view of a view
_OI = FIELDS.index("call_oi")
_OI_ROWS = {
    "call": slice(_OI, _OI + 1),
    "put": slice(_OI + 1, _OI + 2),
    "both": slice(_OI, _OI + 2),
}


def _poll(rule: OiChange, snap: FlowGex, prev: FlowGex) -> list[_Hit]:
    cur, old = columns(snap).m, columns(prev).m
    sides = _SIDES[rule.side]
    hits: list[_Hit] = []
    strike, old_strike = cur[0], old[0]
    # the usual case: the same strikes, in the same order (strikes are never null); equal
    # bytes is the quick proof, values the exact one (0.0 == -0.0)
    if strike.shape == old_strike.shape and (
        strike.tobytes() == old_strike.tobytes() or np.array_equal(strike, old_strike)
    ):
        rows = _OI_ROWS[rule.side]
        after_m, before_m = cur[rows], old[rows]
        # |after - before| > 0: both non-null (NaN fails any comparison) and different (for
        # finite floats a - b == 0 exactly when a == b); call and put in one go. At least
        # min_contracts too: `_passes` would refuse the others (the same float subtraction),
        # and most strikes move by a few contracts every poll
        size = np.abs(after_m - before_m)
        moved = (size >= rule.min_contracts) if rule.min_contracts else (size > 0)
        lo, hi = _window(rule, snap.underlying_price)
        if not rule.min_contracts:  # most strikes move a little every poll: the window here
            moved &= _inside(rule, strike, snap.underlying_price)
        sides_at, strikes_at = moved.nonzero()  # row-major: call rows first, as listed
        for s, i in zip(sides_at.tolist(), strikes_at.tolist(), strict=True):
            k = float(strike[i])
            if not lo <= k <= hi:  # the few that moved min_contracts: the window on them alone
                continue
            after, before = float(after_m[s, i]), float(before_m[s, i])
            ok, pct = _passes(rule, after - before, before)
            if ok:
                hits.append(_entry(k, sides[s], before, after, pct))
        return hits
    lo, hi = _window(rule, snap.underlying_price)  # the strike set moved: match by value
    index = {k: j for j, k in enumerate(old_strike.tolist())}
    strikes = strike.tolist()
    for side in sides:
        row = _OI + 1 if side == "put" else _OI
        after_col, before_col = cur[row], old[row]
        for i, k in enumerate(strikes):
            j = index.get(k)
            if j is None:
                continue
            after, before = float(after_col[i]), float(before_col[j])
            if math.isnan(after) or math.isnan(before) or after == before or not lo <= k <= hi:
                continue
            ok, pct = _passes(rule, after - before, before)
            if ok:
                hits.append(_entry(k, side, before, after, pct))
    return hits


def exchange_day(snap: FlowGex) -> str:
    return snap.as_of.astimezone(_EXCHANGE_TZ).date().isoformat()


def _day(rule: OiChange, old: OiState, snap: FlowGex, first: bool) -> tuple[OiState, list[_Hit]]:
    day = exchange_day(snap)
    seen = old.fired if old.day == day else frozenset()
    hits: list[_Hit] = []
    added: list[str] = []
    cols = columns(snap)
    rows, sides = _ROWS[rule.side], _SIDES[rule.side]
    floor = rule.min_contracts or 0.0
    change_m, oi_m, strike = cols.oi_change[rows], cols.oi[rows], cols.strike
    # a non-zero served change at least `floor` contracts either way (NaN, null, fails both),
    # with a served OI (NaN == NaN is False), inside the window; call and put in one go
    size = np.abs(change_m)
    wanted = ((size >= floor) if floor > 0 else (size > 0)) & (oi_m == oi_m)
    wanted &= _inside(rule, strike, snap.underlying_price)
    sides_at, strikes_at = wanted.nonzero()  # row-major: call rows first, as listed
    for s, i in zip(sides_at.tolist(), strikes_at.tolist(), strict=True):
        k, change, after = float(strike[i]), float(change_m[s, i]), float(oi_m[s, i])
        side = sides[s]
        key = f"{side[0]}:{k!r}"
        if key in seen:
            continue
        before = after - change  # the prior settled OI the change is measured against
        ok, pct = _passes(rule, change, before)
        if ok:
            added.append(key)
            hits.append(_entry(k, side, before, after, pct))
    if not added and old.day == day:
        return old, hits
    return OiState(day, seen.union(added)), ([] if first else hits)


def evaluate(
    rule: OiChange, state: OiState | None, snap: FlowGex, prev: FlowGex | None
) -> tuple[OiState, list[Fired]]:
    if rule.basis == "day":
        new, hits = _day(rule, state if state is not None else OiState(), snap, state is None)
    else:
        new = state if state is not None else OiState()
        hits = _poll(rule, snap, prev) if (prev is not None and state is not None) else []
    if not hits:
        return new, []
    hits.sort(key=lambda h: (h["strike"], h["side"]))
    strikes = tuple(sorted({float(h["strike"]) for h in hits}))
    top = max(hits, key=lambda h: abs(h["change"]))
    what = "strike" if len(strikes) == 1 else "strikes"
    summary = (
        f"{snap.symbol} OI change ({rule.basis}) at {len(strikes)} {what}; largest "
        f"{top['side']} {top['strike']:g}: {top['before']:g} -> {top['after']:g} "
        f"({top['change']:+g} contracts)"
    )
    details = {
        "basis": rule.basis,
        "side": rule.side,
        "spot": snap.underlying_price,
        "previous_as_of": iso_utc(prev.as_of)
        if (prev is not None and rule.basis == "poll")
        else None,
        "exchange_day": new.day,
        "strikes": hits,
    }
    return new, [Fired(summary, details, strikes)]


def needs_prev(rule: OiChange) -> bool:
    return rule.basis == "poll"


# basis poll compares OI per strike: the previous view's strike and OI rows, and its as_of
RULE = RuleType(
    OiChange, OiState, evaluate, needs_prev, prev_columns=("strike", "call_oi", "put_oi")
)
