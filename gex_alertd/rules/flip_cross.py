"""flip_cross: spot crosses the live gamma flip (placeholder until the engine lands)."""

from __future__ import annotations

from typing import Literal

from gex_alertd.rules.base import RuleBase


class FlipCross(RuleBase, tag="flip_cross", kw_only=True):
    direction: Literal["up", "down", "any"] = "any"
    band_pct: float = 0.0
