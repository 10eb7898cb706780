"""`python -m gex_alertd.ops.calendar_export START END`: the NYSE sessions (exchange_calendars,
XNYS) from START to END as one compact JSON document on stdout (`calendar_table` wire form).

It runs in a child process of its own (`calendar_load`), so the daemon never imports pandas
and exchange_calendars (about 40 MB of RSS a 24/7 process should not carry for a table of
~500 rows). The daemon must never import this module; it only runs it. Exit 1 with one line on
stderr when the package cannot answer.
"""

from __future__ import annotations

import sys
import warnings
from datetime import date

from gex_alertd.ops.calendar_table import WIRE_VERSION, CalendarExport, source_of


def export(start: date, end: date) -> bytes:
    import exchange_calendars as xcals
    import msgspec

    with warnings.catch_warnings():
        # exchange_calendars uses pandas APIs that pandas now deprecates: the package
        # maintainers' to act on, not the operator's
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        # built for exactly [start, end]: its schedule is the window's sessions
        cal = xcals.get_calendar("XNYS", start=start.isoformat(), end=end.isoformat())
        rows = [
            (day.date().isoformat(), int(opens.timestamp()), int(closes.timestamp()))
            for day, opens, closes in zip(
                cal.schedule.index, cal.schedule["open"], cal.schedule["close"], strict=True
            )
        ]
    return msgspec.json.encode(
        CalendarExport(
            v=WIRE_VERSION,
            source=source_of(xcals.__version__),
            first=start.isoformat(),
            last=end.isoformat(),
            sessions=rows,
        )
    )


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m gex_alertd.ops.calendar_export START END (ISO dates)",
              file=sys.stderr)  # fmt: skip
        return 2
    try:
        start, end = date.fromisoformat(argv[0]), date.fromisoformat(argv[1])
        out = export(start, end)
    except Exception as exc:  # one line for the daemon's error message, not a traceback
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    sys.stdout.buffer.write(out + b"\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
