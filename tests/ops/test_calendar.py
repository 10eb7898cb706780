"""NYSE market hours: holidays, early closes, extended sessions, DST switch days; answered from
the session table the real export child produced (exchange_calendars out of process)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from gex_alertd.ops.calendar import CalendarRangeError, MarketHours
from tests.support.nyse import LAST, nyse_hours

ET = __import__("zoneinfo").ZoneInfo("America/New_York")
UTC = UTC


def et(y: int, mo: int, d: int, h: int, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=ET)


@pytest.fixture(scope="module")
def nyse() -> MarketHours:
    return nyse_hours()


@pytest.fixture(scope="module")
def extended() -> MarketHours:
    return nyse_hours(premarket=True, postmarket=True)


def test_thanksgiving_2026_closed_all_day(nyse: MarketHours, extended: MarketHours) -> None:
    assert nyse.window(date(2026, 11, 26)) is None
    for h in (4, 9, 12, 15, 19):
        assert not nyse.is_open(et(2026, 11, 26, h, 30))
        assert not extended.is_open(et(2026, 11, 26, h, 30))


@pytest.mark.parametrize(
    "holiday",
    [
        date(2026, 1, 1),  # New Year's Day
        date(2026, 1, 19),  # Martin Luther King Jr. Day
        date(2026, 4, 3),  # Good Friday
        date(2026, 6, 19),  # Juneteenth
        date(2026, 7, 3),  # Independence Day, observed on the Friday
        date(2026, 12, 25),  # Christmas
    ],
)
def test_weekday_holidays_have_no_session(nyse: MarketHours, holiday: date) -> None:
    assert nyse.window(holiday) is None
    assert not nyse.is_open(et(holiday.year, holiday.month, holiday.day, 11))


def test_christmas_eve_2026_closes_early_and_the_next_open_skips_christmas(
    nyse: MarketHours,
) -> None:
    win = nyse.window(date(2026, 12, 24))
    assert win is not None and win.early_close
    assert win.close == datetime(2026, 12, 24, 18, 0, tzinfo=UTC)  # 13:00 EST
    assert nyse.next_open(et(2026, 12, 24, 13, 0)) == et(2026, 12, 28, 9, 30)
    regular = nyse.window(date(2026, 12, 23))
    assert regular is not None and not regular.early_close


def test_day_after_thanksgiving_closes_at_13_et(nyse: MarketHours, extended: MarketHours) -> None:
    win = nyse.window(date(2026, 11, 27))
    assert win is not None and win.early_close
    assert win.close.astimezone(ET) == et(2026, 11, 27, 13, 0)
    assert not nyse.is_open(et(2026, 11, 27, 9, 29))
    assert nyse.is_open(et(2026, 11, 27, 9, 30))
    assert nyse.is_open(et(2026, 11, 27, 12, 59))
    assert not nyse.is_open(et(2026, 11, 27, 13, 0))
    # extended hours after an early close end at 17:00 ET, not 20:00
    assert extended.is_open(et(2026, 11, 27, 16, 59))
    assert not extended.is_open(et(2026, 11, 27, 17, 0))


def test_regular_day_with_extended_hours(nyse: MarketHours, extended: MarketHours) -> None:
    assert not nyse.is_open(et(2026, 11, 24, 4, 0))
    assert extended.is_open(et(2026, 11, 24, 4, 0))
    assert not extended.is_open(et(2026, 11, 24, 3, 59))
    assert nyse.is_open(et(2026, 11, 24, 15, 59))
    assert not nyse.is_open(et(2026, 11, 24, 16, 0))
    assert extended.is_open(et(2026, 11, 24, 19, 59))
    assert not extended.is_open(et(2026, 11, 24, 20, 0))
    pre_only = nyse_hours(premarket=True)
    assert pre_only.is_open(et(2026, 11, 24, 8, 0)) and not pre_only.is_open(
        et(2026, 11, 24, 16, 1)
    )


def test_weekend_closed(nyse: MarketHours, extended: MarketHours) -> None:
    assert not nyse.is_open(et(2026, 11, 28, 12))
    assert not extended.is_open(et(2026, 11, 29, 12))


@pytest.mark.parametrize(
    ("day", "open_utc"),
    [
        (date(2026, 3, 6), datetime(2026, 3, 6, 14, 30, tzinfo=UTC)),  # last Friday on EST
        (date(2026, 3, 9), datetime(2026, 3, 9, 13, 30, tzinfo=UTC)),  # first Monday on EDT
        (date(2026, 10, 30), datetime(2026, 10, 30, 13, 30, tzinfo=UTC)),  # last Friday on EDT
        (date(2026, 11, 2), datetime(2026, 11, 2, 14, 30, tzinfo=UTC)),  # first Monday on EST
    ],
)
def test_open_follows_dst(nyse: MarketHours, day: date, open_utc: datetime) -> None:
    win = nyse.window(day)
    assert win is not None
    assert win.open == open_utc
    assert win.open.astimezone(ET).time().isoformat() == "09:30:00"
    assert nyse.is_open(open_utc) and not nyse.is_open(open_utc.replace(minute=29))


def test_dst_switch_sundays(nyse: MarketHours, extended: MarketHours) -> None:
    # 2026-03-08 and 2026-11-01: the clocks change on a Sunday, no session
    for day in (date(2026, 3, 8), date(2026, 11, 1)):
        assert nyse.window(day) is None and extended.window(day) is None
    # premarket on the Monday after spring-forward starts at 04:00 EDT = 08:00 UTC
    assert extended.is_open(datetime(2026, 3, 9, 8, 0, tzinfo=UTC))
    assert not extended.is_open(datetime(2026, 3, 9, 7, 59, tzinfo=UTC))
    # and after fall-back at 04:00 EST = 09:00 UTC
    assert extended.is_open(datetime(2026, 11, 2, 9, 0, tzinfo=UTC))
    assert not extended.is_open(datetime(2026, 11, 2, 8, 59, tzinfo=UTC))


def test_next_open(nyse: MarketHours, extended: MarketHours) -> None:
    # after Wednesday's close, over Thanksgiving, to the Friday open
    assert nyse.next_open(et(2026, 11, 25, 16, 30)) == et(2026, 11, 27, 9, 30)
    assert extended.next_open(et(2026, 11, 25, 20, 30)) == et(2026, 11, 27, 4, 0)
    # from the early close, over the weekend
    assert nyse.next_open(et(2026, 11, 27, 13, 0)) == et(2026, 11, 30, 9, 30)
    # already open: now
    now = et(2026, 11, 24, 10, 0)
    assert nyse.next_open(now) == now
    # the result keeps the caller's timezone
    got = nyse.next_open(datetime(2026, 11, 28, 12, tzinfo=UTC))
    assert got.tzinfo is UTC and got == et(2026, 11, 30, 9, 30)


def test_always_mode() -> None:
    m = MarketHours("always")
    now = et(2026, 11, 26, 3, 0)
    assert m.is_open(now) and m.next_open(now) == now


def test_beyond_the_tables_window_fails_clearly(nyse: MarketHours) -> None:
    with pytest.raises(CalendarRangeError, match=rf"covers 2025-01-01 to {LAST}; 2040-01-03 is"):
        nyse.is_open(et(2040, 1, 3, 12))
    with pytest.raises(CalendarRangeError, match="not assuming open"):
        nyse.next_open(et(2040, 1, 3, 12))
    # the last days of the window: a session is known, what follows it is not
    assert nyse.window(date(2027, 12, 31)) is not None
    with pytest.raises(CalendarRangeError, match="2028-01-01 is outside it"):
        nyse.next_open(et(2027, 12, 31, 16, 30))


def test_naive_datetime_refused(nyse: MarketHours) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        nyse.is_open(datetime(2026, 11, 24, 12))


def test_bad_mode() -> None:
    with pytest.raises(ValueError, match="market_hours: expected one of always, nyse"):
        MarketHours("lse")  # type: ignore[arg-type]  # not a mode, on purpose
    with pytest.raises(ValueError, match="nyse needs the NYSE session table"):
        MarketHours("nyse")
