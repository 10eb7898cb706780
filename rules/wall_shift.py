"""wall_shift: the call wall and/or the put wall moves to another strike and stays there.

Walls come from `rules.levels` (largest call GEX, largest |put GEX|, ties to the strike
nearer spot), inside `within_pct` of spot when it is set. Edge cases:
  - a snapshot where the wall is undefined (no strike qualifies, or no strikes) neither
    confirms nor breaks a move: the confirmed wall and the streak stay;
  - a move to another strike must be seen `confirm` snapshots in a row (default 2) at that
    same strike; a wall that moves and comes back within `confirm` never fires; a wall that
    moves on to a third strike starts the count again;
  - a move of less than `min_move_pct` of spot from the confirmed wall is noise: it counts as
    staying, so the candidate is dropped; gradual small steps fire once their total passes it;
  - the first wall a rule sees is the baseline; both walls may fire on one snapshot (one alert
    each, told apart by the id's key).
"""

from __future__ import annotations

from typing import Literal

import msgspec

from gex_alertd.model import FlowGex
from gex_alertd.rules.base import Fired, RuleBase, RuleType, fmt_money
from gex_alertd.rules.columns import columns
from gex_alertd.rules.levels import Levels, compute_levels, gex_at, levels

_SIDES = {"call": ("call",), "put": ("put",), "both": ("call", "put")}


class WallShift(RuleBase, tag="wall_shift", kw_only=True):
    wall: Literal["call", "put", "both"] = "both"
    confirm: int = 2
    min_move_pct: float = 0.0
    within_pct: float | None = None

    def problems(self) -> list[tuple[str, str]]:
        out = super().problems()
        if self.confirm < 1:
            out.append(("confirm", f"must be >= 1 snapshot, got {self.confirm}"))
        if self.min_move_pct < 0:
            out.append(("min_move_pct", f"must be >= 0 (percent of spot), got {self.min_move_pct}"))
        if self.within_pct is not None and self.within_pct <= 0:
            out.append(("within_pct", f"must be > 0 (percent of spot), got {self.within_pct}"))
        return out


class Track(msgspec.Struct, array_like=True):
    wall: float | None = None  # the confirmed wall
    candidate: float | None = None  # another strike, while it is being confirmed
    streak: int = 0


class WallState(msgspec.Struct, array_like=True):
    call: Track = msgspec.field(default_factory=Track)
    put: Track = msgspec.field(default_factory=Track)


def walls(rule: WallShift, snap: FlowGex) -> Levels:
    if rule.within_pct is None:
        return levels(snap)  # the snapshot's own levels, worked out once
    return compute_levels(columns(snap), snap.underlying_price, rule.within_pct)


def _step(rule: WallShift, old: Track, now: float | None, spot: float) -> tuple[Track, bool]:
    """(new track, whether the move is confirmed now)."""
    if now is None:
        return old, False
    if old.wall is None:
        return Track(now), False
    if now == old.wall or 100.0 * abs(now - old.wall) / spot < rule.min_move_pct:
        return (old if old.candidate is None else Track(old.wall)), False
    streak = old.streak + 1 if now == old.candidate else 1
    if streak < rule.confirm:
        return Track(old.wall, now, streak), False
    return Track(now), True


def evaluate(
    rule: WallShift, state: WallState | None, snap: FlowGex, prev: FlowGex | None
) -> tuple[WallState, list[Fired]]:
    old = state if state is not None else WallState()
    now = walls(rule, snap)
    spot = snap.underlying_price
    tracks = {"call": old.call, "put": old.put}
    out: list[Fired] = []
    for side in _SIDES[rule.wall]:
        before = tracks[side]
        tracks[side], moved = _step(rule, before, getattr(now, f"{side}_wall"), spot)
        if not moved or before.wall is None:
            continue
        frm, to = before.wall, tracks[side].wall
        assert to is not None
        j = 0 if side == "call" else 1
        cols = columns(snap)
        g_from, g_to = gex_at(cols, frm, j), gex_at(cols, to, j)
        summary = (
            f"{snap.symbol} {side} wall moved {frm:g} -> {to:g} "
            f"({fmt_money(g_to) if g_to is not None else 'n/a'} at {to:g}; spot {spot:.2f})"
        )
        details = {
            "wall": side,
            "from": frm,
            "to": to,
            "direction": "up" if to > frm else "down",
            "move_pct": 100.0 * abs(to - frm) / spot,
            "spot": spot,
            "gex_from": g_from,
            "gex_to": g_to,
            "confirm": rule.confirm,
        }
        out.append(Fired(summary, details, key=side))
    new = WallState(tracks["call"], tracks["put"])
    return new, (out if state is not None else [])


RULE = RuleType(WallShift, WallState, evaluate)
