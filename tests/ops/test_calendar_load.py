"""The NYSE table out of process: the real export child, its failures refused with the cause
(broken, oversized, slow, failing), the Redis cache a restart reads, the refresh when the
window runs short, and no pandas in the daemon's own process."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, date, datetime, timedelta

import pytest
import redis.asyncio as aioredis

from gex_alertd import keys
from gex_alertd.ops.calendar_load import CalendarUnavailable, NyseCalendar, export
from gex_alertd.ops.calendar_table import SessionTable

NOW = datetime(2026, 11, 29, 23, 0, tzinfo=UTC)  # Sunday evening, 18:00 ET


def child(code: str) -> list[str]:
    """A stand-in export command (the start and end dates arrive as its arguments)."""
    return [sys.executable, "-c", code]


class Counting:
    """The real export, counted; or a failure with a given cause."""

    def __init__(self, fail: str | None = None) -> None:
        self.calls: list[tuple[date, date]] = []
        self.fail = fail

    async def __call__(self, start: date, end: date) -> SessionTable:
        self.calls.append((start, end))
        if self.fail is not None:
            raise CalendarUnavailable(self.fail)
        return await export(start, end)


async def test_the_real_child_exports_sessions_with_early_closes() -> None:
    table = await export(date(2026, 11, 1), date(2026, 12, 31))
    assert table.source.startswith("exchange_calendars ")
    friday = table.session(date(2026, 11, 27))
    assert friday is not None and friday.close == datetime(2026, 11, 27, 18, 0, tzinfo=UTC)
    assert table.session(date(2026, 11, 26)) is None
    # the first Monday after the fall-back: 09:30 EST is 14:30 UTC
    monday = table.session(date(2026, 11, 2))
    assert monday is not None and monday.open == datetime(2026, 11, 2, 14, 30, tzinfo=UTC)
    assert len(table) == 42  # November: 21 weekdays less Thanksgiving; December: 23 less Christmas


@pytest.mark.parametrize(
    ("code", "cause"),
    [
        ("print('hello')", r"refused: not a calendar export"),
        ("import sys; sys.stdout.write('x' * 10**6)", "more than 262144 bytes of output"),
        (
            "import sys; print('Traceback...', file=sys.stderr); "
            "print('ModuleNotFoundError: No module named pandas', file=sys.stderr); sys.exit(1)",
            r"failed \(exit status 1\): ModuleNotFoundError: No module named pandas",
        ),
        ("import sys; sys.exit(3)", r"failed \(exit status 3\): no message"),
    ],
    ids=["broken", "oversized", "failing", "silent"],
)
async def test_a_bad_child_is_refused_naming_the_cause(code: str, cause: str) -> None:
    with pytest.raises(CalendarUnavailable, match=r"NYSE calendar export \(2026-01-01 to .*"):
        await export(date(2026, 1, 1), date(2026, 2, 1), command=child(code))
    with pytest.raises(CalendarUnavailable, match=cause):
        await export(date(2026, 1, 1), date(2026, 2, 1), command=child(code))


async def test_a_slow_child_is_stopped_and_refused() -> None:
    slow = child("import time; time.sleep(600)")
    with pytest.raises(CalendarUnavailable, match=r"no answer within 1 s"):
        await export(date(2026, 1, 1), date(2026, 2, 1), command=slow, timeout_s=1)


async def test_exported_once_then_read_from_redis_by_the_next_start(
    redis: aioredis.Redis,
) -> None:
    first = Counting()
    cal = NyseCalendar(redis, export=first, clock=lambda: NOW)
    with pytest.raises(CalendarUnavailable, match="not loaded yet"):
        cal.current()
    table = await cal.ensure()
    # about a year either side of today (New York's date)
    assert first.calls == [(date(2025, 11, 28), date(2027, 11, 30))]
    assert cal.current() is table and table.first == date(2025, 11, 28)
    assert await cal.ensure() is table and len(first.calls) == 1  # fresh: nothing to do
    assert await redis.strlen(keys.CALENDAR_NYSE) == len(table.encode())

    # a restart: a new process, the same Redis
    again = Counting(fail="must not run")
    restarted = NyseCalendar(redis, export=again, clock=lambda: NOW)
    cached = await restarted.ensure()
    assert again.calls == [] and cached.encode() == table.encode()


async def test_a_refresh_when_the_window_runs_short(redis: aioredis.Redis) -> None:
    now = [NOW]
    calls = Counting()
    cal = NyseCalendar(redis, export=calls, clock=lambda: now[0])
    old = await cal.ensure()
    now[0] = NOW + timedelta(days=340)  # 26 days of window left, under the 30-day runway
    new = await cal.ensure()
    assert len(calls.calls) == 2 and new.last == date(2028, 11, 4) and new is not old
    assert cal.current() is new


async def test_a_failed_refresh_keeps_the_table_and_waits_before_trying_again(
    redis: aioredis.Redis,
) -> None:
    now = [NOW]
    works = Counting()
    cal = NyseCalendar(redis, export=works, clock=lambda: now[0])
    table = await cal.ensure()
    broken = Counting(fail="NYSE calendar export (...) failed (exit status 1): boom")
    cal._export = broken
    now[0] = NOW + timedelta(days=340)
    assert await cal.ensure() is table  # short of runway but still answering
    assert await cal.ensure() is table
    assert len(broken.calls) == 1  # one attempt per RETRY_S, not one per question
    assert cal.error is not None and "boom" in cal.error
    now[0] = NOW + timedelta(days=355)  # the window no longer covers the coming two weeks
    with pytest.raises(CalendarUnavailable, match="boom"):
        await cal.ensure()


async def test_no_table_at_all_is_unavailable_with_the_cause() -> None:
    cal = NyseCalendar(None, export=Counting(fail="export failed: ImportError"), clock=lambda: NOW)
    with pytest.raises(CalendarUnavailable, match="ImportError"):
        await cal.ensure()
    with pytest.raises(CalendarUnavailable, match="ImportError"):
        cal.current()


async def test_a_corrupt_cached_table_is_refused_and_exported_again(
    redis: aioredis.Redis,
) -> None:
    await redis.set(keys.CALENDAR_NYSE, b'{"v": 1, "source": "x"' + b" " * 10**6)
    calls = Counting()
    table = await NyseCalendar(redis, export=calls, clock=lambda: NOW).ensure()
    assert len(calls.calls) == 1 and len(table) > 400
    assert await redis.get(keys.CALENDAR_NYSE) == table.encode()


def test_the_daemon_modules_never_import_pandas() -> None:
    """What `run` imports and does with the calendar: the app, the outcome duty, a table
    exported by the child, the NYSE gate and the outcome closes from it."""
    code = """
import asyncio, sys
from datetime import UTC, datetime
import gex_alertd.app, gex_alertd.outcomes.live, gex_alertd.duties
from gex_alertd.ops.calendar import MarketHours
from gex_alertd.ops.calendar_load import NyseCalendar
from gex_alertd.outcomes.horizons import Sessions

cal = NyseCalendar()
asyncio.run(cal.ensure())
hours = MarketHours("nyse", table=cal.current)
hours.is_open(datetime.now(UTC)); hours.next_open(datetime.now(UTC))
Sessions(cal.current).close_ms(int(datetime.now(UTC).timestamp() * 1000))
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("pandas", "exchange_calendars"))
assert not loaded, loaded
print("clean")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.splitlines()[-1] == "clean", done.stderr[-3000:]


async def test_a_table_from_another_package_version_is_exported_again_once(
    redis: aioredis.Redis,
) -> None:
    table = await NyseCalendar(redis, export=Counting(), clock=lambda: NOW).ensure()
    # exchange-calendars upgraded: the cached table is of the old version
    upgraded = Counting()
    cal = NyseCalendar(
        redis, export=upgraded, clock=lambda: NOW, source=lambda: "exchange_calendars 9.9 XNYS"
    )
    again = await cal.ensure()
    assert len(upgraded.calls) == 1 and again is not table
    # the export names itself by its own version: taken as it is, not exported per question
    assert await cal.ensure() is again and len(upgraded.calls) == 1
