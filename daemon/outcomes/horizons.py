"""Horizons (`5m`, `60m`, `close`) and where each one ends for an alert.

A fixed horizon that runs past the NYSE regular close of the alert's trading day ends at that
close (`capped`): the post-market is thinner and a different market, and the published wall
statistics are per session. `close` ends at that day's close, early closes included. An alert
at or after its day's close, or on a day with no session, has no `close` horizon (None) and its
fixed horizons are not capped. Days outside the session table's window count as no session.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import NamedTuple

import numpy as np

from gex_alertd.ops.calendar_table import NEW_YORK, CalendarRangeError, SessionTable
from gex_alertd.rules.duration import parse_duration

CLOSE = "close"
DEFAULT_HORIZONS = ("5m", "15m", "30m", "60m", CLOSE)


class Horizon(NamedTuple):
    label: str
    seconds: float | None  # None: to the close


def label_of(seconds: float) -> str:
    if seconds >= 60 and seconds % 60 == 0:
        return f"{int(seconds // 60)}m"
    return f"{seconds:g}s"


def parse_horizon(text: object) -> Horizon:
    """`close`, or a duration (`30m`, `1h`, `90s`, seconds as a number); ValueError otherwise."""
    if isinstance(text, str) and text.strip().lower() == CLOSE:
        return Horizon(CLOSE, None)
    try:
        seconds = float(parse_duration(text))
    except ValueError:
        raise ValueError(f"expected a duration such as 30m or 'close', got {text!r}") from None
    if seconds <= 0:
        raise ValueError(f"a horizon must be longer than 0, got {text!r}")
    return Horizon(label_of(seconds), seconds)


def parse_horizons(items: Iterable[object] | str) -> list[Horizon]:
    """A list, or a comma-separated string (`5m,30m,close`); duplicates dropped, order kept."""
    if isinstance(items, str):
        items = [p for p in (x.strip() for x in items.split(",")) if p]
    out: list[Horizon] = []
    for item in items:
        h = parse_horizon(item)
        if h not in out:
            out.append(h)
    if not out:
        raise ValueError("at least one horizon")
    return out


class Sessions:
    """The NYSE regular close of an instant's ET trading day (ms). `table` gives the current
    session table (ops.calendar_load); it may raise CalendarUnavailable when there is none."""

    def __init__(self, table: Callable[[], SessionTable]) -> None:
        self._table = table

    def close_ms(self, at_ms: int) -> int | None:
        day = datetime.fromtimestamp(at_ms / 1000, UTC).astimezone(NEW_YORK).date()
        try:
            session = self._table().session(day)
        except CalendarRangeError:
            return None
        return None if session is None else session.close_s * 1000


class End(NamedTuple):
    ms: int | None  # None: the horizon does not exist for this alert (no session to close)
    capped: bool


def horizon_end(at_ms: int, horizon: Horizon, close_ms: int | None) -> End:
    """Where `horizon` ends for an alert at `at_ms` whose trading day closes at `close_ms`."""
    in_session = close_ms is not None and at_ms < close_ms
    if horizon.seconds is None:
        return End(close_ms if in_session else None, False)
    end = at_ms + round(horizon.seconds * 1000)
    if in_session and close_ms is not None and end > close_ms:
        return End(close_ms, True)
    return End(end, False)


def et_offsets_ms(t_ms: np.ndarray) -> np.ndarray:
    """New York's UTC offset (ms) at each instant, worked out once per UTC day: the offset
    changes at 2:00 ET on a Sunday, when no market is open, so noon UTC stands for the day."""
    days = t_ms // 86_400_000
    uniq, inverse = np.unique(days, return_inverse=True)
    offsets = np.array(
        [
            int(datetime.fromtimestamp(int(d) * 86_400 + 43_200, UTC).astimezone(NEW_YORK)
                .utcoffset().total_seconds() * 1000)  # type: ignore[union-attr]  # aware
            for d in uniq
        ],
        dtype=np.int64,
    )  # fmt: skip
    return offsets[inverse] if len(uniq) else np.zeros(0, dtype=np.int64)


def et_hours(t_ms: np.ndarray) -> np.ndarray:
    """The ET hour of day (0-23) of each instant."""
    local = t_ms + et_offsets_ms(t_ms)
    return (local // 3_600_000) % 24


def et_days(t_ms: np.ndarray) -> np.ndarray:
    """The ET calendar day (days since the epoch) of each instant."""
    return (t_ms + et_offsets_ms(t_ms)) // 86_400_000
