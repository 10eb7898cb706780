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
from typing import Any, Literal
from zoneinfo import ZoneInfo

import msgspec

from gex_alertd.model import STRIKE_FIELDS, FlowGex, iso_utc
from gex_alertd.rules.base import Fired, RuleBase, RuleType

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
    fired: list[str] = []  # basis day: "c|p:strike" keys that fired (or were the baseline)


# Column positions in msgspec.structs.astuple(StrikeRow)
_K, _CALL_OI, _PUT_OI, _CALL_CHG, _PUT_CHG = (
    STRIKE_FIELDS.index(f)
    for f in ("strike", "call_oi", "put_oi", "call_oi_change", "put_oi_change")
)
_DAY_SIDES = {
    "call": (("call", _CALL_OI, _CALL_CHG),),
    "put": (("put", _PUT_OI, _PUT_CHG),),
    "both": (("call", _CALL_OI, _CALL_CHG), ("put", _PUT_OI, _PUT_CHG)),
}

# Replay and the live path both evaluate a snapshot, then pass it as `prev` to the next one:
# its rows as tuples are memoised (a few entries, holding the snapshot so its id stays unique).
# The memo is invisible to callers; it only saves rebuilding 200 tuples per snapshot.
_memo: dict[tuple[int, str], tuple[FlowGex, list[tuple[Any, ...]]]] = {}
_astuple = msgspec.structs.astuple


def _rows(snap: FlowGex, view: str = "all") -> list[tuple[Any, ...]]:
    """The rows as tuples (`all`: every field; `oi`: strike, call_oi, put_oi)."""
    hit = _memo.get((id(snap), view))
    if hit is not None and hit[0] is snap:
        return hit[1]
    if view == "all":
        rows = list(map(_astuple, snap.strikes))
    else:
        rows = [(r.strike, r.call_oi, r.put_oi) for r in snap.strikes]
    if len(_memo) >= 16:
        del _memo[next(iter(_memo))]
    _memo[(id(snap), view)] = (snap, rows)
    return rows


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


def _entry(strike: float, side: str, before: float, after: float, pct: float) -> dict[str, object]:
    return {
        "strike": strike,
        "side": side,
        "before": before,
        "after": after,
        "change": after - before,
        "change_pct": None if math.isinf(pct) else round(pct, 4),
    }


_POLL_SIDES = {
    "call": (("call", 1),),
    "put": (("put", 2),),
    "both": (("call", 1), ("put", 2)),
}


def _poll(rule: OiChange, snap: FlowGex, prev: FlowGex) -> list[dict[str, object]]:
    cur, old = _rows(snap, "oi"), _rows(prev, "oi")
    if cur == old:
        return []
    # only rows whose OI changed can fire: find them with C-level tuple compares, matching
    # row by row while the strike list is the same, by strike when it moved
    if len(cur) == len(old) and cur[0][0] == old[0][0] and cur[-1][0] == old[-1][0]:
        pairs = [(a, b) for a, b in zip(cur, old, strict=True) if a != b]
        if any(a[0] != b[0] for a, b in pairs):
            pairs = _match(cur, old)
    else:
        pairs = _match(cur, old)
    lo, hi = _window(rule, snap.underlying_price)
    hits: list[dict[str, object]] = []
    for row, before_row in pairs:
        k = row[0]
        if not lo <= k <= hi:
            continue
        for side, i in _POLL_SIDES[rule.side]:
            after, before = row[i], before_row[i]
            if after is None or before is None or after == before:
                continue
            ok, pct = _passes(rule, after - before, before)
            if ok:
                hits.append(_entry(k, side, before, after, pct))
    return hits


def _match(
    cur: list[tuple[Any, ...]], old: list[tuple[Any, ...]]
) -> list[tuple[tuple[Any, ...], tuple[Any, ...]]]:
    by_strike = {r[0]: r for r in old}
    out = []
    for r in cur:
        b = by_strike.get(r[0])
        if b is not None and b != r:
            out.append((r, b))
    return out


def exchange_day(snap: FlowGex) -> str:
    return snap.as_of.astimezone(_EXCHANGE_TZ).date().isoformat()


def _day(
    rule: OiChange, old: OiState, snap: FlowGex, first: bool
) -> tuple[OiState, list[dict[str, object]]]:
    day = exchange_day(snap)
    seen = set(old.fired) if old.day == day else set()
    lo, hi = _window(rule, snap.underlying_price)
    hits: list[dict[str, object]] = []
    added: list[str] = []
    floor = rule.min_contracts or 0.0
    for side, oi, chg in _DAY_SIDES[rule.side]:
        # cheap pre-filter: the change is served, non-zero and at least min_contracts
        for row in [r for r in _rows(snap) if r[chg] and (r[chg] >= floor or r[chg] <= -floor)]:
            k, change, after = row[_K], row[chg], row[oi]
            if after is None or not lo <= k <= hi:
                continue
            key = f"{side[0]}:{k!r}"
            if key in seen:
                continue
            before = after - change  # the prior settled OI the change is measured against
            ok, pct = _passes(rule, change, before)
            if ok:
                added.append(key)
                seen.add(key)
                hits.append(_entry(k, side, before, after, pct))
    if not added and old.day == day:
        return old, hits
    fired = [*old.fired, *added] if old.day == day else added
    return OiState(day, fired), ([] if first else hits)


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
    hits.sort(key=lambda h: (h["strike"], h["side"]))  # type: ignore[arg-type,return-value]
    strikes = tuple(sorted({float(h["strike"]) for h in hits}))  # type: ignore[arg-type]
    top = max(hits, key=lambda h: abs(h["change"]))  # type: ignore[arg-type]
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


RULE = RuleType(OiChange, OiState, evaluate, needs_prev)
