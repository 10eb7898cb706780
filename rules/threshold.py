"""threshold: a snapshot field crosses above or below a level.

"Above" is strictly greater than `above`, "below" strictly less than `below`; a value exactly
on the level is on neither side yet. A null field (the flip distance when no flip is
available) neither fires nor resets the side.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from gex_alertd.model import FlowGex
from gex_alertd.rules.base import Fired, RuleBase, RuleType
from gex_alertd.rules.levels import flip_distance_pct

Field = Literal["live_net_gex", "underlying_price", "flip_distance_pct"]


class Threshold(RuleBase, tag="threshold", kw_only=True):
    field: Field
    above: float | None = None
    below: float | None = None

    def problems(self) -> list[tuple[str, str]]:
        out = super().problems()
        if self.above is None and self.below is None:
            out.append(("above", "set above and/or below"))
        for key in ("above", "below"):
            level = getattr(self, key)
            if level is None:
                continue
            if self.field == "underlying_price" and level <= 0:
                out.append((key, f"the price is always > 0, so {level} can never be crossed"))
            if self.field == "flip_distance_pct" and level >= 100:
                # 100 * (spot - flip) / spot < 100 for any positive flip
                out.append((key, f"the flip distance is always < 100 %, got {level}"))
        return out


def field_value(field: str, snap: FlowGex) -> float | None:
    if field == "live_net_gex":
        return snap.live_net_gex
    if field == "underlying_price":
        return snap.underlying_price
    return flip_distance_pct(snap)


class LevelState(msgspec.Struct, array_like=True):
    over: bool | None = None  # value > above, at the last decisive snapshot
    under: bool | None = None  # value < below, at the last decisive snapshot
    value: float | None = None


def evaluate(
    rule: Threshold, state: LevelState | None, snap: FlowGex, prev: FlowGex | None
) -> tuple[LevelState, list[Fired]]:
    old = state if state is not None else LevelState()
    value = field_value(rule.field, snap)
    if value is None:
        return old, []
    over, under = old.over, old.under
    fired: list[tuple[str, float]] = []
    if rule.above is not None and value != rule.above:
        over = value > rule.above
        if over and old.over is False:
            fired.append(("above", rule.above))
    if rule.below is not None and value != rule.below:
        under = value < rule.below
        if under and old.under is False:
            fired.append(("below", rule.below))
    new = LevelState(over, under, value)
    if state is None or not fired:
        return new, []
    out = []
    for where, level in fired:
        summary = f"{snap.symbol} {rule.field} crossed {where} {level:g}: now {value:g}"
        details = {
            "field": rule.field,
            "direction": where,
            "level": level,
            "value": value,
            "previous_value": old.value,
            "spot": snap.underlying_price,
            "flip": snap.flip,
            "live_net_gex": snap.live_net_gex,
        }
        # one value cannot cross both levels at once, so the id needs no "above"/"below" key
        out.append(Fired(summary, details))
    return new, out


RULE = RuleType(Threshold, LevelState, evaluate)
