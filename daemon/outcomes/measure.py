"""The outcome of one alert at one horizon, from the spot path that follows it. Pure.

Definitions (README "Outcome statistics"):
  - start: the alert's own snapshot (the last one at or before its as_of); end: the horizon's
    end (`horizons.horizon_end`: capped at the session close). Spot at an instant is the last
    stored snapshot at or before it (a polling gap or a halt carries the last price forward).
  - direction: flip_cross `up` and net_gex_sign `to_positive` count +1, `down` and
    `to_negative` -1 (a convention of this report, not a claim that either predicts a
    direction); every other alert is unsigned and its move is the plain change.
  - move_pct: 100 * (end / start - 1) times the direction; `hit`: move_pct > 0.
  - mfe_pct / mae_pct: the most favourable / most adverse signed move of any snapshot in the
    window (>= 0 / <= 0; the start itself counts as 0).
  - vol_after_pct / vol_before_pct: realized volatility over the window and over the same
    length right before the alert, annualized in percent: sqrt(sum of squared log returns
    between consecutive snapshots * TRADING_YEAR_S / length). No return in the window is 0.
  - held / broke, for alerts with a level (the flip of a flip_cross, a wall...): the side of
    the level spot was on at the alert; `held` when every snapshot in the window stays strictly
    on that side, the definition of the published wall statistics ("the call wall held: the
    day's high stayed below it") applied to the sampled path and the horizon.
  - status: `ok`; `gap` when the window has a hole longer than `max_gap_s` between snapshots
    (or before its end): the values are still computed with the last price carried forward but
    the report leaves them out of the statistics (stored history cannot tell a trading halt
    from a daemon that was down); `open` when the window has not ended at `now_ms` (the
    report's time) as the live duty judges it: the stream holds no snapshot at or after its end
    and `settle_ms` has not passed since (a snapshot of an earlier as_of may still be stored),
    so later snapshots can still change every figure, and it is left out like a gap (the
    live duty stores an outcome only once its window has ended); `no_data`
    when no snapshot is at or before the alert; `no_session` for `close` outside a session.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import msgspec
import numpy as np

from gex_alertd.model import AlertEvent
from gex_alertd.outcomes.horizons import Horizon, horizon_end
from gex_alertd.outcomes.paths import SpotPath

TRADING_YEAR_S = 252 * 6.5 * 3600  # regular-session seconds in a trading year
DEFAULT_MAX_GAP_S = 600.0

Status = Literal["ok", "gap", "open", "no_data", "no_session"]

_SIGNS: dict[tuple[str, str], int] = {
    ("flip_cross", "up"): 1,
    ("flip_cross", "down"): -1,
    ("net_gex_sign", "to_positive"): 1,
    ("net_gex_sign", "to_negative"): -1,
}
# where each level rule keeps its level in the alert's details; `level` wins when present
_LEVEL_KEYS: dict[str, tuple[str, ...]] = {
    "flip_cross": ("flip",),
    "flip_guard": ("flip",),
    "wall_shift": ("to",),  # the wall's new strike
    "level_proximity": ("level_value",),  # `level` there names the level (flip, call_wall...)
}


def direction_sign(event: AlertEvent) -> int:
    """+1 / -1 for an alert with a direction (see the module docstring), 0 for unsigned."""
    return _SIGNS.get((event.type, str(event.details.get("direction", ""))), 0)


def level_of(event: AlertEvent) -> float | None:
    """The price level a level rule's alert is about, read from its details; None otherwise."""
    keys = _LEVEL_KEYS.get(event.type)
    if keys is None and "level" not in event.details:
        return None
    for key in ("level", *(keys or ())):
        value = event.details.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            if math.isfinite(value) and value > 0:
                return float(value)
    return None


class Outcome(msgspec.Struct, frozen=True, omit_defaults=True):
    horizon: str
    status: Status
    end_ms: int | None = None
    capped: bool = False
    samples: int = 0  # snapshots in the window, the start included
    max_gap_s: float | None = None
    spot: float | None = None
    end_spot: float | None = None
    change_pct: float | None = None  # plain change, whatever the direction
    move_pct: float | None = None  # in the alert's direction (the change when unsigned)
    mfe_pct: float | None = None
    mae_pct: float | None = None
    vol_after_pct: float | None = None
    vol_before_pct: float | None = None
    level: float | None = None
    held: bool | None = None

    @property
    def counted(self) -> bool:
        return self.status == "ok" and self.move_pct is not None


def realized_vol_pct(spot: np.ndarray, length_ms: int) -> float | None:
    if length_ms <= 0 or len(spot) == 0:
        return None
    r = np.diff(np.log(spot))
    var = float(np.dot(r, r))
    return 100.0 * math.sqrt(var * TRADING_YEAR_S / (length_ms / 1000.0))


def _before(path: SpotPath, at_ms: int, i0: int, length: int, max_gap_s: float) -> float | None:
    """Realized vol over the `length` before the alert. Its start carries the last price
    forward like the window does, unless that price is older than the gap limit (the previous
    session's close, a daemon that was down): then the window starts at its first snapshot and
    is that much shorter, so an overnight move never counts as the pre-alert volatility."""
    t = path.t
    start = at_ms - length
    j0 = int(np.searchsorted(t, start, side="right")) - 1
    span = length
    if j0 < 0 or t[j0] < start - max_gap_s * 1000:
        j0 = int(np.searchsorted(t, start, side="left"))
        span = at_ms - int(t[j0]) if j0 <= i0 else 0
    if j0 >= i0:
        return None
    return realized_vol_pct(path.spot[j0 : i0 + 1], span)


def window_ended(end_ms: int, last_ms: int | None, now_ms: int, settle_ms: int) -> bool:
    """Whether a window ending at `end_ms` can no longer change: the stream holds a snapshot
    at or after its end (`last_ms`, its newest; None: empty), or `settle_ms` has passed since
    by the clock. Before that a snapshot of an earlier as_of (the provider's lags the clock)
    can still be stored in it. The live duty stores an outcome and the report counts one by
    this same test."""
    return (last_ms is not None and last_ms >= end_ms) or now_ms >= end_ms + settle_ms


def measure(
    path: SpotPath,
    at_ms: int,
    horizon: Horizon,
    *,
    close_ms: int | None,
    sign: int = 0,
    level: float | None = None,
    max_gap_s: float = DEFAULT_MAX_GAP_S,
    now_ms: int | None = None,
    settle_ms: int = 0,
) -> Outcome:
    """The outcome of an alert at `at_ms` on `path` (see the module docstring); `now_ms`: the
    time it is measured at, None when the caller knows the window has ended; `settle_ms`:
    `outcomes.settle`, how long after its end a window the stream never reached ends."""
    t, spot = path.t, path.spot
    i0 = int(np.searchsorted(t, at_ms, side="right")) - 1
    if i0 < 0:
        return Outcome(horizon.label, "no_data")
    end = horizon_end(at_ms, horizon, close_ms)
    if end.ms is None:
        return Outcome(horizon.label, "no_session")
    te = end.ms
    if now_ms is not None and not window_ended(te, int(t[-1]), now_ms, settle_ms):
        return Outcome(horizon.label, "open", end_ms=te, capped=end.capped)
    i1 = max(i0, int(np.searchsorted(t, te, side="right")) - 1)
    window = spot[i0 : i1 + 1]
    s0 = float(window[0])
    edges = np.append(t[i0 + 1 : i1 + 1], te) - np.append(at_ms, t[i0 + 1 : i1 + 1])
    max_gap = float(edges.max()) / 1000.0 if len(edges) else 0.0
    k = sign if sign else 1
    moves = (window / s0 - 1.0) * 100.0 * k
    change = (float(window[-1]) / s0 - 1.0) * 100.0
    length = te - at_ms
    before = _before(path, at_ms, i0, length, max_gap_s)
    held = None
    if level is not None and s0 != level:
        side = 1.0 if s0 > level else -1.0
        held = bool(np.all((window[1:] - level) * side > 0))
    return Outcome(
        horizon=horizon.label,
        status="gap" if max_gap > max_gap_s else "ok",
        end_ms=te,
        capped=end.capped,
        samples=len(window),
        max_gap_s=max_gap,
        spot=s0,
        end_spot=float(window[-1]),
        change_pct=change,
        move_pct=change * k,
        mfe_pct=max(0.0, float(moves.max())),
        mae_pct=min(0.0, float(moves.min())),
        vol_after_pct=realized_vol_pct(window, length),
        vol_before_pct=before,
        level=level,
        held=held,
    )


def measure_alert(
    path: SpotPath,
    event: AlertEvent,
    at_ms: int,
    horizons: list[Horizon],
    close_ms: int | None,
    max_gap_s: float = DEFAULT_MAX_GAP_S,
    now_ms: int | None = None,
    settle_ms: int = 0,
) -> dict[str, Outcome]:
    """Every horizon of one alert, keyed by the horizon's label."""
    sign, level = direction_sign(event), level_of(event)
    return {
        h.label: measure(
            path,
            at_ms,
            h,
            close_ms=close_ms,
            sign=sign,
            level=level,
            max_gap_s=max_gap_s,
            now_ms=now_ms,
            settle_ms=settle_ms,
        )
        for h in horizons
    }


def as_dict(outcome: Outcome) -> dict[str, Any]:
    out: dict[str, Any] = msgspec.to_builtins(outcome)
    return out
