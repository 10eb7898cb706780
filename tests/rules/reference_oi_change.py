"""The tuple-based oi_change before numpy columns (commit c843931), kept as the reference the
current rule must equal output for output (tests/rules/test_oi_change_reference.py)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from functools import partial
from itertools import compress
from operator import le, ne
from typing import Any, NamedTuple, cast
from zoneinfo import ZoneInfo

import msgspec

from gex_alertd.model import STRIKE_FIELDS, FlowGex, iso_utc
from gex_alertd.rules.base import Fired
from gex_alertd.rules.oi_change import OiChange, OiState

_EXCHANGE_TZ = ZoneInfo("America/New_York")


def columns(snap: FlowGex) -> _Cols:
    if not snap.strikes:
        return _Cols((), (), (), (), ())
    cols = tuple(zip(*map(msgspec.structs.astuple, snap.strikes), strict=True))
    return _Cols(*(cols[STRIKE_FIELDS.index(f)] for f in _Cols._fields))


class _Cols(NamedTuple):
    strike: tuple[float, ...]
    call_oi: tuple[float | None, ...]
    put_oi: tuple[float | None, ...]
    call_oi_change: tuple[float | None, ...]
    put_oi_change: tuple[float | None, ...]


def changed(a: tuple[object, ...], b: tuple[object, ...]) -> list[int]:
    if a == b:
        return []
    return list(compress(range(len(a)), map(ne, a, b)))


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


def _entry(strike: float, side: str, before: float, after: float, pct: float) -> dict[str, Any]:
    return {
        "strike": strike,
        "side": side,
        "before": before,
        "after": after,
        "change": after - before,
        "change_pct": None if math.isinf(pct) else round(pct, 4),
    }


def _poll(rule: OiChange, snap: FlowGex, prev: FlowGex) -> list[dict[str, Any]]:
    cur, old = columns(snap), columns(prev)
    lo, hi = _window(rule, snap.underlying_price)
    hits: list[dict[str, Any]] = []
    aligned = cur.strike == old.strike  # the usual case: the same strikes, in the same order
    if not aligned:
        index = {k: i for i, k in enumerate(old.strike)}
    for side in _SIDES[rule.side]:
        after_col, before_col = getattr(cur, f"{side}_oi"), getattr(old, f"{side}_oi")
        if aligned:
            pairs = [(i, i) for i in changed(after_col, before_col)]
        else:
            pairs = [(i, index[k]) for i, k in enumerate(cur.strike) if k in index]
        for i, j in pairs:
            k, after, before = cur.strike[i], after_col[i], before_col[j]
            if after is None or before is None or after == before or not lo <= k <= hi:
                continue
            ok, pct = _passes(rule, after - before, before)
            if ok:
                hits.append(_entry(k, side, before, after, pct))
    return hits


def _candidates(change_col: tuple[float | None, ...], floor: float) -> Iterable[int]:
    """Indexes whose served change is non-zero and at least `floor` contracts either way."""
    if floor > 0 and None not in change_col:  # C-level scan, the common case
        present = cast("tuple[float, ...]", change_col)  # no None, as just checked
        return compress(range(len(present)), map(partial(le, floor), map(abs, present)))
    return [i for i, c in enumerate(change_col) if c and abs(c) >= floor]


def exchange_day(snap: FlowGex) -> str:
    return snap.as_of.astimezone(_EXCHANGE_TZ).date().isoformat()


def _day(
    rule: OiChange, old: OiState, snap: FlowGex, first: bool
) -> tuple[OiState, list[dict[str, Any]]]:
    day = exchange_day(snap)
    seen = old.fired if old.day == day else frozenset()
    lo, hi = _window(rule, snap.underlying_price)
    hits: list[dict[str, Any]] = []
    added: list[str] = []
    cols = columns(snap)
    floor = rule.min_contracts or 0.0
    for side in _SIDES[rule.side]:
        change_col, oi_col = getattr(cols, f"{side}_oi_change"), getattr(cols, f"{side}_oi")
        for i in _candidates(change_col, floor):
            k, change, after = cols.strike[i], change_col[i], oi_col[i]
            if change is None or after is None or not lo <= k <= hi:
                continue
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
