"""The NYSE session table's wire form: what a believable export looks like, what is refused
(each refusal names the cause and the place), and the table's bounds."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pytest

from gex_alertd.ops.calendar_table import (
    MAX_BYTES,
    CalendarDataError,
    CalendarRangeError,
    decode,
)

ET = __import__("zoneinfo").ZoneInfo("America/New_York")


def at(y: int, mo: int, d: int, h: int, mi: int = 0) -> int:
    return int(datetime(y, mo, d, h, mi, tzinfo=ET).timestamp())


# Thanksgiving week 2026: Wednesday, (Thursday closed), Friday's early close, Monday
WEEK = [
    ["2026-11-25", at(2026, 11, 25, 9, 30), at(2026, 11, 25, 16)],
    ["2026-11-27", at(2026, 11, 27, 9, 30), at(2026, 11, 27, 13)],
    ["2026-11-30", at(2026, 11, 30, 9, 30), at(2026, 11, 30, 16)],
]


def wire(**over: object) -> bytes:
    doc = {"v": 1, "source": "test", "first": "2026-11-25", "last": "2026-11-30"}
    doc["sessions"] = WEEK
    doc.update(over)
    return json.dumps(doc).encode()


def test_a_week_decodes_and_answers_by_day() -> None:
    table = decode(wire())
    assert (
        len(table) == 3 and table.first == date(2026, 11, 25) and table.last == date(2026, 11, 30)
    )
    assert table.session(date(2026, 11, 26)) is None  # Thanksgiving
    assert table.session(date(2026, 11, 28)) is None  # Saturday
    friday = table.session(date(2026, 11, 27))
    assert friday is not None and friday.close == datetime(2026, 11, 27, 18, 0, tzinfo=UTC)
    assert decode(table.encode()).encode() == table.encode()


def test_bounds_are_inclusive_and_outside_is_refused() -> None:
    table = decode(wire())
    assert table.session(date(2026, 11, 25)) is not None
    assert table.session(date(2026, 11, 30)) is not None
    for day in (date(2026, 11, 24), date(2026, 12, 1)):
        with pytest.raises(CalendarRangeError, match=f"covers 2026-11-25 to 2026-11-30; {day}"):
            table.session(day)


@pytest.mark.parametrize(
    ("raw", "cause"),
    [
        (b"ImportError: no module", "not a calendar export"),
        (wire(v=2), r"\$.v: version 2"),
        (wire(first="2026-13-01"), r"\$.first: '2026-13-01' is not an ISO date"),
        (wire(first="2026-12-01"), "is not a window of days"),
        (wire(extra=1), "not a calendar export"),
        (wire(sessions=[["2026-11-25", "09:30", "16:00"]]), "not a calendar export"),
        (wire(sessions=[WEEK[1], WEEK[0], WEEK[2]]), r"\$.sessions\[1\]: 2026-11-25 is not after"),
        (wire(sessions=[WEEK[0], WEEK[0], WEEK[2]]), r"\$.sessions\[1\]: 2026-11-25 is not after"),
        (wire(sessions=[["2026-12-01", *WEEK[2][1:]]]), r"\$.sessions\[0\]: 2026-12-01 is outside"),
        (wire(sessions=[["2026-11-25", WEEK[0][2], WEEK[0][1]]]), "is not within 12 h after"),
        (wire(sessions=[["2026-11-25", WEEK[2][1], WEEK[2][2]]]), "opens on 2026-11-30 in New"),
        (wire(sessions=[["2026-11-25", 10**15, 10**15 + 60]]), r"open \d+ is not an instant"),
    ],
)
def test_unbelievable_exports_are_refused_naming_the_cause(raw: bytes, cause: str) -> None:
    with pytest.raises(CalendarDataError, match=cause):
        decode(raw)


def test_a_truncated_export_is_refused() -> None:
    # a month with one session: the NYSE never closes for more than 14 days in a row
    month = wire(last="2026-12-31")
    with pytest.raises(CalendarDataError, match="no session from 2026-12-01 to 2026-12-31"):
        decode(month)
    empty = wire(first="2026-11-01", sessions=[])
    with pytest.raises(CalendarDataError, match="no session from 2026-11-01 to 2026-11-30"):
        decode(empty)
    # a few days with no session at all are a holiday weekend, not a truncation
    assert len(decode(wire(first="2026-11-26", last="2026-11-26", sessions=[]))) == 0


def test_oversized_is_refused_before_parsing() -> None:
    raw = wire(source="x" * MAX_BYTES)
    with pytest.raises(CalendarDataError, match=f"more than the {MAX_BYTES} a table can need"):
        decode(raw)
