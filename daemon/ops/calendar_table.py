"""The NYSE session table: each session's date, open and close (UTC) over a window of days, in
plain Python, so the daemon answers "is this a session, when does it close" without pandas.

exchange_calendars stays the source of truth; it runs out of process (`calendar_export`) and
hands over the table in the wire form below, which is hostile input like any other: bounded in
size, typed, and checked for the shape a real NYSE schedule has before it is believed. A table
never answers for a day outside its window (CalendarRangeError): it refuses rather than guess
open. This module is pure: no I/O, no clock.
"""

from __future__ import annotations

from bisect import bisect_left
from datetime import UTC, date, datetime, timedelta
from typing import NamedTuple
from zoneinfo import ZoneInfo

import msgspec

from gex_alertd.quoted import quoted

NEW_YORK = ZoneInfo("America/New_York")
WIRE_VERSION = 1
# two years of sessions is ~18 KB; anything this large is not a calendar
MAX_BYTES = 256 * 1024
MAX_SPAN_DAYS = 4 * 366
# NYSE never closes longer than a long weekend plus a holiday (or two in 2001/2012 emergencies):
# a longer hole in an export means a truncated or wrong table
MAX_CLOSED_DAYS = 14
MAX_SESSION_S = 12 * 3600


def source_of(version: str) -> str:
    """What a table says it came from: a table of another package version is out of date."""
    return f"exchange_calendars {version} XNYS"


class CalendarRangeError(RuntimeError):
    """Asked about a day the table does not cover: refuse rather than guess open."""


class CalendarDataError(ValueError):
    """A calendar export that is not a believable NYSE table (the message names the cause)."""


class CalendarExport(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The wire form: `sessions` holds [ISO date, open, close] with UTC epoch seconds."""

    v: int
    source: str
    first: str
    last: str
    sessions: list[tuple[str, int, int]]


class Session(NamedTuple):
    day: date
    open_s: int
    close_s: int

    @property
    def open(self) -> datetime:
        return datetime.fromtimestamp(self.open_s, UTC)

    @property
    def close(self) -> datetime:
        return datetime.fromtimestamp(self.close_s, UTC)


class SessionTable:
    """Every NYSE session in [first, last]; lookups are a bisect over sorted day ordinals."""

    def __init__(self, first: date, last: date, sessions: list[Session], source: str) -> None:
        self.first = first
        self.last = last
        self.source = source
        self._sessions = sessions
        self._ordinals = [s.day.toordinal() for s in sessions]

    def __len__(self) -> int:
        return len(self._sessions)

    def covers(self, day: date) -> bool:
        return self.first <= day <= self.last

    def session(self, day: date) -> Session | None:
        """The session on an ET calendar day, None when the exchange is closed that day."""
        if not self.covers(day):
            raise CalendarRangeError(
                f"NYSE calendar ({self.source}) covers {self.first} to {self.last}; "
                f"{day} is outside it, so market hours are unknown (not assuming open)"
            )
        i = bisect_left(self._ordinals, day.toordinal())
        if i < len(self._ordinals) and self._ordinals[i] == day.toordinal():
            return self._sessions[i]
        return None

    def encode(self) -> bytes:
        return msgspec.json.encode(
            CalendarExport(
                v=WIRE_VERSION,
                source=self.source,
                first=self.first.isoformat(),
                last=self.last.isoformat(),
                sessions=[(s.day.isoformat(), s.open_s, s.close_s) for s in self._sessions],
            )
        )


def decode(raw: bytes) -> SessionTable:
    """A table from its wire form, or CalendarDataError naming what is wrong and where."""
    if len(raw) > MAX_BYTES:
        raise CalendarDataError(f"{len(raw)} bytes, more than the {MAX_BYTES} a table can need")
    try:
        wire = msgspec.json.decode(raw, type=CalendarExport)
    except msgspec.DecodeError as exc:
        raise CalendarDataError(f"not a calendar export: {exc}") from None
    if wire.v != WIRE_VERSION:
        raise CalendarDataError(f"$.v: version {wire.v}, expected {WIRE_VERSION}")
    first, last = _day("$.first", wire.first), _day("$.last", wire.last)
    if not first <= last <= first + timedelta(days=MAX_SPAN_DAYS):
        raise CalendarDataError(f"$.first..$.last: {first} to {last} is not a window of days")
    sessions = [_session(i, first, last, row) for i, row in enumerate(wire.sessions)]
    previous = first - timedelta(days=1)
    for i, s in enumerate(sessions):
        if s.day <= previous:
            raise CalendarDataError(f"$.sessions[{i}]: {s.day} is not after {previous}")
        _no_long_hole(previous, s.day, f"$.sessions[{i}]")
        previous = s.day
    _no_long_hole(previous, last + timedelta(days=1), "$.last")
    return SessionTable(first, last, sessions, wire.source[:80])


def _day(where: str, text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise CalendarDataError(f"{where}: {quoted(text)} is not an ISO date") from None


def _session(i: int, first: date, last: date, row: tuple[str, int, int]) -> Session:
    where = f"$.sessions[{i}]"
    day = _day(where, row[0])
    open_s, close_s = row[1], row[2]
    if not first <= day <= last:
        raise CalendarDataError(f"{where}: {day} is outside {first} to {last}")
    if not 0 < close_s - open_s <= MAX_SESSION_S:
        raise CalendarDataError(f"{where}: close {close_s} is not within 12 h after open {open_s}")
    try:
        opened_on = datetime.fromtimestamp(open_s, UTC).astimezone(NEW_YORK).date()
    except (OverflowError, OSError, ValueError):
        raise CalendarDataError(f"{where}: open {open_s} is not an instant") from None
    if opened_on != day:
        raise CalendarDataError(f"{where}: opens on {opened_on} in New York, not on {day}")
    return Session(day, open_s, close_s)


def _no_long_hole(before: date, after: date, where: str) -> None:
    if (after - before).days - 1 > MAX_CLOSED_DAYS:
        raise CalendarDataError(
            f"{where}: no session from {before + timedelta(days=1)} to "
            f"{after - timedelta(days=1)}; the NYSE never closes that long (a truncated export?)"
        )
