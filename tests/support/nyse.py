"""The real NYSE session table for tests: exported once per test process by the same child the
daemon runs (`python -m gex_alertd.ops.calendar_export`), over a fixed window around the dates
the tests use, so they do not move with today's date."""

from __future__ import annotations

import functools
import subprocess

from gex_alertd.ops.calendar import MarketHours
from gex_alertd.ops.calendar_load import EXPORT_COMMAND
from gex_alertd.ops.calendar_table import SessionTable, decode
from gex_alertd.outcomes.horizons import Sessions

FIRST, LAST = "2025-01-01", "2027-12-31"


@functools.cache
def nyse_table() -> SessionTable:
    done = subprocess.run(
        [*EXPORT_COMMAND, FIRST, LAST], capture_output=True, timeout=300, check=False
    )
    assert done.returncode == 0, f"calendar export failed: {done.stderr.decode()[-2000:]}"
    return decode(done.stdout)


def nyse_hours(premarket: bool = False, postmarket: bool = False) -> MarketHours:
    return MarketHours("nyse", premarket, postmarket, table=nyse_table)


def nyse_sessions() -> Sessions:
    return Sessions(nyse_table)
