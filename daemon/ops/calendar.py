"""The market-hours gate: `always`, or NYSE sessions with holidays and early closes.

The NYSE schedule is a `calendar_table.SessionTable` (plain Python, exported out of process from
exchange_calendars by `calendar_load`), read through a getter so a refreshed table applies at
the next question. This module never imports pandas: the daemon's RSS stays the daemon's.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from typing import Literal

import msgspec

from gex_alertd.ops.calendar_table import (
    MAX_CLOSED_DAYS,
    NEW_YORK,
    CalendarRangeError,
    SessionTable,
)

__all__ = ["NEW_YORK", "CalendarRangeError", "MarketHours", "Window"]

PREMARKET_START = time(4, 0)
POSTMARKET_END = time(20, 0)
POSTMARKET_END_EARLY_CLOSE = time(17, 0)
REGULAR_CLOSE = time(16, 0)

Mode = Literal["always", "nyse"]


class Window(msgspec.Struct, frozen=True):
    """One trading day's polling window (UTC instants) plus the regular session inside it."""

    start: datetime
    end: datetime
    open: datetime
    close: datetime
    early_close: bool


class MarketHours:
    """`table` gives the current NYSE session table (only asked when `mode` is `nyse`)."""

    def __init__(
        self,
        mode: Mode = "always",
        premarket: bool = False,
        postmarket: bool = False,
        *,
        table: Callable[[], SessionTable] | None = None,
    ):
        if mode not in ("always", "nyse"):
            raise ValueError(f"market_hours: expected one of always, nyse, got {mode!r}")
        if mode == "nyse" and table is None:
            raise ValueError("market_hours: nyse needs the NYSE session table")
        self.mode = mode
        self.premarket = premarket
        self.postmarket = postmarket
        self._table = table

    def is_open(self, now: datetime) -> bool:
        if self.mode == "always":
            return True
        instant = _aware(now)
        win = self.window(instant.astimezone(NEW_YORK).date())
        return win is not None and win.start <= instant < win.end

    def next_open(self, now: datetime) -> datetime:
        """`now` if polling is allowed now, else the start of the next polling window."""
        if self.mode == "always":
            return now
        instant = _aware(now)
        day = instant.astimezone(NEW_YORK).date()
        for offset in range(MAX_CLOSED_DAYS + 1):
            win = self.window(day + timedelta(days=offset))
            if win is not None and instant < win.end:
                return max(win.start, instant).astimezone(now.tzinfo)
        raise CalendarRangeError(
            f"no NYSE session within {MAX_CLOSED_DAYS} days after {now.isoformat()}"
        )

    def window(self, day: date) -> Window | None:
        """The polling window of an ET calendar day, or None when the exchange is closed."""
        assert self._table is not None  # nyse has a table (__init__)
        session = self._table().session(day)
        if session is None:
            return None
        open_, close = session.open, session.close
        early = close.astimezone(NEW_YORK).time() < REGULAR_CLOSE
        start = datetime.combine(day, PREMARKET_START, NEW_YORK) if self.premarket else open_
        if self.postmarket:
            end_local = POSTMARKET_END_EARLY_CLOSE if early else POSTMARKET_END
            end = datetime.combine(day, end_local, NEW_YORK)
        else:
            end = close
        return Window(start=start, end=end, open=open_, close=close, early_close=early)


def _aware(now: datetime) -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(
            f"market hours need a timezone-aware datetime, got naive {now.isoformat()}"
        )
    return now
