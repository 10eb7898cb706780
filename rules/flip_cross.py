"""flip_cross: spot crosses the live gamma flip.

side = sign(spot - flip), counted only when the flip is available and spot is outside the
hysteresis band (100 * |spot - flip| / spot > band_pct). Inside the band, or with no flip,
the last confirmed side stays as it was: a flip that goes missing and comes back on the
other side of spot fires once, when it is seen again.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from gex_alertd.model import FlowGex
from gex_alertd.rules.base import Fired, RuleBase, RuleType
from gex_alertd.rules.words import label_word


class FlipCross(RuleBase, tag="flip_cross", kw_only=True):
    direction: Literal["up", "down", "any"] = "any"
    band_pct: float = 0.0

    def problems(self) -> list[tuple[str, str]]:
        out = super().problems()
        if not 0 <= self.band_pct < 100:
            out.append(
                ("band_pct", f"must be >= 0 and < 100 (percent of spot), got {self.band_pct}")
            )
        return out


class FlipState(msgspec.Struct, array_like=True):
    side: int = 0  # -1 below, +1 above, 0 not yet confirmed
    flip: float | None = None  # flip at the last confirmed side, for the alert's details
    spot: float | None = None


def evaluate(
    rule: FlipCross, state: FlipState | None, snap: FlowGex, prev: FlowGex | None
) -> tuple[FlipState, list[Fired]]:
    old = state if state is not None else FlipState()
    flip = snap.flip
    if flip is None:
        return old, []
    spot = snap.underlying_price
    dist_pct = 100.0 * (spot - flip) / spot
    if abs(dist_pct) <= rule.band_pct or dist_pct == 0.0:
        return old, []  # on the flip or inside the band: nothing is confirmed
    side = 1 if dist_pct > 0 else -1
    new = FlipState(side, flip, spot)
    if state is None or old.side == 0 or side == old.side:
        return new, []
    direction = "up" if side > 0 else "down"
    if rule.direction not in ("any", direction):
        return new, []
    where = "above" if side > 0 else "below"
    summary = (
        f"{snap.symbol} crossed {where} the gamma flip: spot {spot:.2f} vs flip {flip:.2f} "
        f"({dist_pct:+.2f}%)"
    )
    details = {
        "direction": direction,
        "spot": spot,
        "flip": flip,
        "distance_pct": round(dist_pct, 6),
        "previous_spot": old.spot,
        "previous_flip": old.flip,
        "band_pct": rule.band_pct,
        "live_net_gex": snap.live_net_gex,
        "live_net_gex_label": label_word(snap.live_net_gex_label),
    }
    return new, [Fired(summary, details)]


RULE = RuleType(FlipCross, FlipState, evaluate)
