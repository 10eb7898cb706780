"""The levels a GEX trader watches, worked out from one snapshot: walls, regime, flip distance.

Pure: functions of the snapshot (its strike columns, `rules.columns`) and nothing else, so the
live commit, replay, the stored scalar fields and every alert's details agree by construction.

Walls (signs as served, never re-derived from OI or from the other side):
  - call wall: the strike with the largest call GEX. Calls are positive in every convention the
    provider documents, so a strike needs call GEX > 0 to be a wall; none -> None.
  - put wall: the strike with the largest |put GEX| (puts are negative in the simulator's
    convention and positive in the provider's sample, so the magnitude decides); none -> None.
  - a null value (NaN in the columns) never makes a wall.
  - ties: the strike nearer spot; two tied strikes at the same distance (one each side): the
    lower one, so the answer never depends on row order.
  - `within_pct`: only strikes with 100 * |strike - spot| / spot <= within_pct count (the edge
    is inside), so a far-away strike cannot be a wall; no strike inside -> None.
Regime: `live_net_gex_label` as served (`positive` / `negative`, any case); anything else or
absent -> None (never re-derived from the sign of `live_net_gex`).
Flip distance: 100 * (spot - flip) / spot, positive when spot is above the flip; None when no
flip is available (`FlowGex.flip`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
import numpy as np

from gex_alertd.model import FlowGex
from gex_alertd.rules.columns import StrikeColumns, columns

_LEVELS = "_levels"  # key in a snapshot's __dict__ (see rules.columns: lives with the snapshot)
REGIMES = ("positive", "negative")


class Levels(msgspec.Struct, frozen=True):
    call_wall: float | None = None
    put_wall: float | None = None


def in_window(strike: np.ndarray, spot: float, within_pct: float | None) -> np.ndarray:
    """Mask of the strikes inside the window around spot (all of them without a window)."""
    if within_pct is None:
        return np.ones(strike.shape, dtype=bool)
    return 100.0 * np.abs(strike - spot) / spot <= within_pct


def _wall(
    values: np.ndarray, strike: np.ndarray, spot: float, mask: np.ndarray | None
) -> float | None:
    v = values if mask is None else np.where(mask, values, np.nan)
    # the largest value, NaN (null) ignored: NaN only when every value is null; a wall needs
    # it > 0 (so the largest positive value is the largest value)
    best = np.fmax.reduce(v)
    if not best > 0:
        return None
    hit = np.flatnonzero(v == best)
    if len(hit) == 1:  # the usual case: no tie
        return float(strike[hit[0]])
    tied = strike[hit]
    dist = np.abs(tied - spot)
    return float(tied[dist == dist.min()].min())


def compute_levels(cols: StrikeColumns, spot: float, within_pct: float | None = None) -> Levels:
    strike = cols.strike
    if not strike.size:
        return Levels()
    mask = None if within_pct is None else in_window(strike, spot, within_pct)
    gex = cols.gex
    return Levels(
        call_wall=_wall(gex[0], strike, spot, mask),
        put_wall=_wall(np.abs(gex[1]), strike, spot, mask),
    )


def levels(snap: FlowGex) -> Levels:
    """The snapshot's walls with no window (the stored `call_wall` / `put_wall` fields and the
    levels in every alert's details), worked out once per snapshot."""
    found: Levels | None = snap.__dict__.get(_LEVELS)
    if found is None:
        found = snap.__dict__[_LEVELS] = compute_levels(columns(snap), snap.underlying_price)
    return found


def levels_many(snaps: Sequence[FlowGex]) -> list[Levels]:
    """`[levels(s) for s in snaps]`, with the numpy work done once for all the snapshots of one
    strike count (a commit batch: ~10 numpy calls per snapshot were the cost, ~9 us in the
    daemon, not the values). The same walls: a wall is the single strike at the largest value,
    exactly as `_wall` finds it; a tie (or a snapshot with its levels already worked out) takes
    the one-snapshot way."""
    out: list[Levels | None] = [s.__dict__.get(_LEVELS) for s in snaps]
    groups: dict[int, list[int]] = {}
    for i, found in enumerate(out):
        if found is None:
            groups.setdefault(columns(snaps[i]).m.shape[1], []).append(i)
    for count, idx in groups.items():
        if len(idx) == 1 or not count:
            for i in idx:
                out[i] = levels(snaps[i])
            continue
        views = [columns(snaps[i]).m for i in idx]
        strikes = np.stack([m[0] for m in views])
        v = np.stack([m[5:7] for m in views])  # (snapshot, call/put, strike): GEX as served
        np.abs(v[:, 1], out=v[:, 1])  # the put wall is the largest |put GEX|
        best = np.fmax.reduce(v, axis=2)  # NaN (null) ignored, NaN only when all are
        hits = v == best[:, :, None]
        single = (np.add.reduce(hits, axis=2) == 1).tolist()
        at = strikes[np.arange(len(idx))[:, None], hits.argmax(axis=2)].tolist()
        for row, (i, top) in enumerate(zip(idx, best.tolist(), strict=True)):
            walls: list[float | None] = []
            for side in (0, 1):
                if not top[side] > 0:  # no positive value: no wall
                    walls.append(None)
                elif single[row][side]:
                    walls.append(at[row][side])
                else:  # a tie: nearer spot, then lower
                    walls.append(_wall(v[row, side], strikes[row], snaps[i].underlying_price, None))
            found = snaps[i].__dict__[_LEVELS] = Levels(*walls)
            out[i] = found
    return [found for found in out if found is not None]


def attach_levels(snap: FlowGex, found: Levels) -> None:
    """Make `found` the levels of `snap` (read back from the stored scalar fields, which hold
    exactly what `levels` worked out when the entry was written)."""
    snap.__dict__[_LEVELS] = found


def regime(snap: FlowGex) -> str | None:
    return regime_of(snap.live_net_gex_label)


def regime_of(label: str | None) -> str | None:
    """The served `live_net_gex_label` as a regime word (also for a stored entry's `label`)."""
    word = (label or "").strip().lower()
    return word if word in REGIMES else None


def flip_distance_pct(snap: FlowGex) -> float | None:
    return distance_pct(snap.underlying_price, snap.flip)


def distance_pct(spot: float | None, level: float | None) -> float | None:
    """How far spot is above `level`, in % of spot (negative below); None without both."""
    if not spot or level is None:
        return None
    return 100.0 * (spot - level) / spot


def gex_at(cols: StrikeColumns, strike: float | None, side: int) -> float | None:
    """The served GEX of one side (0 call, 1 put) at a strike; None when absent or null."""
    if strike is None:
        return None
    hit = np.flatnonzero(cols.strike == strike)
    if not hit.size:
        return None
    value = float(cols.gex[side, hit[0]])
    return None if value != value else value  # NaN is null


def details(snap: FlowGex) -> dict[str, Any]:
    """The levels every alert carries in its details (design.md "Alert event")."""
    lv = levels(snap)
    return {
        "regime": regime(snap),
        "flip_distance_pct": flip_distance_pct(snap),
        "call_wall": lv.call_wall,
        "put_wall": lv.put_wall,
    }
