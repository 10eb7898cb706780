"""The market-hours gate: `always`, or NYSE sessions with holidays and early closes.

The NYSE schedule comes from `exchange_calendars` (XNYS), imported only when `nyse` is chosen:
it pulls in pandas, which costs tens of MB of RSS that a 24/7 deployment should not pay.
Session lookups are cached per ET calendar day, so the per-poll cost is a dict lookup.
"""

from __future__ import annotations

import warnings
from datetime import date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

import msgspec

NEW_YORK = ZoneInfo("America/New_York")
PREMARKET_START = time(4, 0)
POSTMARKET_END = time(20, 0)
POSTMARKET_END_EARLY_CLOSE = time(17, 0)
REGULAR_CLOSE = time(16, 0)
# NYSE never closes longer than a long weekend plus a holiday (or two in 2001/2012 emergencies)
_MAX_CLOSED_DAYS = 14

Mode = Literal["always", "nyse"]


class CalendarRangeError(RuntimeError):
    """Asked about a day the bundled calendar does not cover: refuse rather than guess open."""


class Window(msgspec.Struct, frozen=True):
    """One trading day's polling window (UTC instants) plus the regular session inside it."""

    start: datetime
    end: datetime
    open: datetime
    close: datetime
    early_close: bool


class MarketHours:
    def __init__(self, mode: Mode = "always", premarket: bool = False, postmarket: bool = False):
        if mode not in ("always", "nyse"):
            raise ValueError(f"market_hours: expected one of always, nyse, got {mode!r}")
        self.mode = mode
        self.premarket = premarket
        self.postmarket = postmarket
        self._days: dict[date, Window | None] = {}

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
        for offset in range(_MAX_CLOSED_DAYS + 1):
            win = self.window(day + timedelta(days=offset))
            if win is not None and instant < win.end:
                return max(win.start, instant).astimezone(now.tzinfo)
        raise CalendarRangeError(
            f"no NYSE session within {_MAX_CLOSED_DAYS} days after {now.isoformat()}"
        )

    def window(self, day: date) -> Window | None:
        """The polling window of an ET calendar day, or None when the exchange is closed."""
        if day in self._days:
            return self._days[day]
        with warnings.catch_warnings():
            # exchange_calendars uses pandas APIs that pandas now deprecates; the warning is the
            # package maintainers' to act on, not the operator's (it would reach the journal)
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            win = self._compute(day)
        self._days[day] = win
        return win

    def _compute(self, day: date) -> Window | None:
        import pandas as pd

        cal = self._calendar(day)
        ts = pd.Timestamp(day)
        if not cal.is_session(ts):
            return None
        open_ = cal.session_open(ts).to_pydatetime()
        close = cal.session_close(ts).to_pydatetime()
        early = close.astimezone(NEW_YORK).time() < REGULAR_CLOSE
        start = datetime.combine(day, PREMARKET_START, NEW_YORK) if self.premarket else open_
        if self.postmarket:
            end_local = POSTMARKET_END_EARLY_CLOSE if early else POSTMARKET_END
            end = datetime.combine(day, end_local, NEW_YORK)
        else:
            end = close
        return Window(start=start, end=end, open=open_, close=close, early_close=early)

    def _calendar(self, day: date) -> Any:
        global _shared
        import exchange_calendars as xcals

        today = datetime.now(NEW_YORK).date()
        if _shared is None or (_shared[0] != today and not _covers(_shared[1], day)):
            # The package's own default horizon (20 years back, 1 year ahead of today) is what it
            # vouches for; explicit bounds so a long-running daemon gets a fresh one as days pass
            # (get_calendar caches the default-range instance per process). Shared by every
            # MarketHours, so a config reload does not rebuild it on the event loop.
            cal = xcals.get_calendar(
                "XNYS", start=today - timedelta(days=20 * 365), end=today + timedelta(days=365)
            )
            _shared = (today, cal)
        cal = _shared[1]
        if not _covers(cal, day):
            first = cal.first_session.date()
            last = cal.last_session.date()
            raise CalendarRangeError(
                f"NYSE calendar (exchange_calendars {xcals.__version__}) covers {first} to {last}; "
                f"{day} is outside it, so market hours are unknown (not assuming open)"
            )
        return cal


_shared: tuple[date, Any] | None = None  # (built on, XNYS calendar)


def _covers(cal: Any, day: date) -> bool:
    return bool(cal.first_session.date() <= day <= cal.last_session.date())


def _aware(now: datetime) -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(
            f"market hours need a timezone-aware datetime, got naive {now.isoformat()}"
        )
    return now
