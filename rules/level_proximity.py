"""level_proximity: spot enters (and, with `on_exit`, leaves) a zone around a level.

The level is the flip (`FlowGex.flip`), the call wall or the put wall (`rules.levels`, no
window). The zone is |spot - level| <= within_pct % of spot (its edge is inside). Hysteresis:
once inside, spot counts as outside only beyond within_pct + band_pct, so jitter at the edge
does not repeat the alert. Edge cases:
  - a snapshot without the level (no flip available, no wall) neither enters nor leaves:
    the side stays until the level is back;
  - the level itself may move (a new wall): the zone is always around the current level,
    so a wall jumping next to spot is an entry;
  - the first snapshot is the baseline: starting inside never fires, and its exit does not
    resolve anything (only an announced entry is resolved);
  - the exit is sent as `status: resolved` (same group key as the entry).
"""

from __future__ import annotations

from typing import Literal

import msgspec

from gex_alertd.model import RESOLVED, FlowGex
from gex_alertd.rules.base import Fired, RuleBase, RuleType
from gex_alertd.rules.levels import levels

Level = Literal["flip", "call_wall", "put_wall"]


class LevelProximity(RuleBase, tag="level_proximity", kw_only=True):
    level: Level
    within_pct: float
    band_pct: float = 0.0
    on_exit: bool = False

    def problems(self) -> list[tuple[str, str]]:
        out = super().problems()
        if self.within_pct <= 0:
            out.append(("within_pct", f"must be > 0 (percent of spot), got {self.within_pct}"))
        if self.band_pct < 0:
            out.append(("band_pct", f"must be >= 0 (percent of spot), got {self.band_pct}"))
        return out


def level_value(level: str, snap: FlowGex) -> float | None:
    if level == "flip":
        return snap.flip
    lv = levels(snap)
    return lv.call_wall if level == "call_wall" else lv.put_wall


class ZoneState(msgspec.Struct, array_like=True):
    inside: bool | None = None
    announced: bool = False  # the entry was reported (so its exit resolves it)


def evaluate(
    rule: LevelProximity, state: ZoneState | None, snap: FlowGex, prev: FlowGex | None
) -> tuple[ZoneState, list[Fired]]:
    old = state if state is not None else ZoneState()
    level = level_value(rule.level, snap)
    if level is None:
        return old, []
    spot = snap.underlying_price
    dist = 100.0 * abs(spot - level) / spot
    inside = dist <= rule.within_pct + (rule.band_pct if old.inside else 0.0)
    if state is None or old.inside is None:
        return ZoneState(inside), []
    if inside == old.inside:
        return old, []
    details = {
        "level": rule.level,
        "level_value": level,
        "spot": spot,
        "distance_pct": dist,
        "within_pct": rule.within_pct,
        "band_pct": rule.band_pct,
        "side": "above" if spot > level else "below" if spot < level else "at",
    }
    name = rule.level.replace("_", " ")
    if inside:
        summary = f"{snap.symbol} spot {spot:.2f} near the {name} {level:g} ({dist:.2f} %)"
        return ZoneState(True, True), [Fired(summary, {**details, "zone": "entered"})]
    new = ZoneState(False, False)
    if not (rule.on_exit and old.announced):
        return new, []
    summary = f"{snap.symbol} spot {spot:.2f} left the {name} {level:g} zone ({dist:.2f} %)"
    return new, [Fired(summary, {**details, "zone": "left"}, status=RESOLVED)]


RULE = RuleType(LevelProximity, ZoneState, evaluate)
