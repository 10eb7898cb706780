"""Getting the NYSE session table into the daemon without pandas: from Redis, or from a child.

`export` runs `calendar_export` (exchange_calendars) in a child process with the daemon's own
interpreter, bounded in time and in output size, and believes its output only once
`calendar_table.decode` accepts it. `NyseCalendar` holds the table the daemon answers from:
it keeps a window of about a year either side of today, reuses the copy cached in Redis (so a
restart rarely needs the child), and refreshes when fewer than `RUNWAY` days are left ahead or
the installed exchange-calendars is another version than the table's (new holidays, closures).
A failed refresh keeps a table that still covers the coming days and tries again after
`RETRY_S`; one log line per attempt. Nothing here imports pandas.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from importlib import metadata
from typing import Any

import structlog

from gex_alertd import keys
from gex_alertd.ops.calendar_table import (
    MAX_BYTES,
    MAX_CLOSED_DAYS,
    NEW_YORK,
    CalendarDataError,
    SessionTable,
    decode,
    source_of,
)

log = structlog.get_logger()

EXPORT_COMMAND = (sys.executable, "-m", "gex_alertd.ops.calendar_export")
EXPORT_TIMEOUT_S = 120.0  # pandas' import alone takes seconds on a busy small box
BACK = timedelta(days=366)  # the outcome duty and the report look at past sessions
AHEAD = timedelta(days=366)
RUNWAY = timedelta(days=30)  # refresh when the table ends sooner than this
RETRY_S = 600.0
_STDERR_KEEP = 2048

Export = Callable[[date, date], Awaitable[SessionTable]]


class CalendarUnavailable(RuntimeError):
    """No NYSE session table to answer from; the message says why."""


async def export(
    start: date,
    end: date,
    *,
    command: Sequence[str] = EXPORT_COMMAND,
    timeout_s: float = EXPORT_TIMEOUT_S,
    max_bytes: int = MAX_BYTES,
) -> SessionTable:
    """The sessions from `start` to `end`, exported by a child process; CalendarUnavailable
    naming the cause when it fails, is slow, says too much or says something unbelievable."""
    what = f"NYSE calendar export ({start} to {end})"
    proc = await asyncio.create_subprocess_exec(
        *command,
        start.isoformat(),
        end.isoformat(),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    out_task = asyncio.ensure_future(_read_at_most(proc.stdout, max_bytes))
    err_task = asyncio.ensure_future(_tail(proc.stderr))
    try:
        async with asyncio.timeout(timeout_s):
            out, err = await out_task, await err_task
            rc = await proc.wait()
    except TimeoutError:
        raise CalendarUnavailable(f"{what}: no answer within {timeout_s:g} s") from None
    except _TooLong:
        raise CalendarUnavailable(f"{what}: more than {max_bytes} bytes of output") from None
    finally:
        if proc.returncode is None:
            proc.kill()
        for task in (out_task, err_task):
            task.cancel()
        await asyncio.gather(out_task, err_task, return_exceptions=True)
        # the dead child's pipes read to their end first: wait() returns once they are closed
        await asyncio.gather(proc.stdout.read(), proc.stderr.read())
        await proc.wait()
    if rc != 0:
        reason = err.decode(errors="replace").strip().splitlines()[-1:] or ["no message"]
        raise CalendarUnavailable(f"{what} failed (exit status {rc}): {reason[0][:300]}")
    try:
        return decode(out)
    except CalendarDataError as exc:
        raise CalendarUnavailable(f"{what} refused: {exc}") from None


class _TooLong(Exception):
    pass


async def _read_at_most(stream: asyncio.StreamReader, limit: int) -> bytes:
    data = bytearray()
    while chunk := await stream.read(65536):
        data += chunk
        if len(data) > limit:
            raise _TooLong
    return bytes(data)


async def _tail(stream: asyncio.StreamReader) -> bytes:
    """The end of stderr (the reason is its last line); read to EOF so the child never blocks."""
    kept = b""
    while chunk := await stream.read(65536):
        kept = (kept + chunk)[-_STDERR_KEEP:]
    return kept


def installed_source() -> str | None:
    """The source an export would name now (package metadata only: no import of it)."""
    try:
        return source_of(metadata.version("exchange-calendars"))
    except metadata.PackageNotFoundError:
        return None  # the export will say so


def today_in_new_york(now: datetime) -> date:
    return now.astimezone(NEW_YORK).date()


class NyseCalendar:
    """The daemon's session table: `current()` answers at once; `ensure()` (async) loads or
    refreshes it. `redis` (optional) caches the exported table under `keys.CALENDAR_NYSE`."""

    def __init__(
        self,
        redis: Any = None,
        *,
        table: SessionTable | None = None,
        export: Export = export,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        retry_s: float = RETRY_S,
        source: Callable[[], str | None] = installed_source,
    ) -> None:
        self.redis = redis
        self.retry_s = retry_s
        self.table = table
        self.error: str | None = None
        self._export = export
        self._clock = clock
        self._failed_at: float | None = None
        self._source = source
        self._exported_for: str | None = None
        self._lock = asyncio.Lock()

    def current(self) -> SessionTable:
        if self.table is None:
            raise CalendarUnavailable(self.error or "NYSE calendar not loaded yet")
        return self.table

    async def ensure(self) -> SessionTable:
        """A table with at least `RUNWAY` ahead of today, or the one we have while it still
        covers the next days; CalendarUnavailable (the cause) when there is none."""
        async with self._lock:
            today = today_in_new_york(self._clock())
            # what an export would name now; once exported for it, the table stands (should the
            # package ever name itself otherwise than its metadata, no export per question)
            source = self._source()
            if _fresh(self.table, today, None if self._exported_for == source else source):
                return self.current()
            cached = await self._cached()
            if cached is not None and _fresh(cached, today, source):
                self.table = cached
                return cached
            if cached is not None and (self.table is None or cached.last > self.table.last):
                self.table = cached  # short of runway, but it answers if the child fails
            if self._failed_at is None or time.monotonic() - self._failed_at >= self.retry_s:
                await self._refresh(today)
            if self.table is not None and _usable(self.table, today):
                return self.table
            raise CalendarUnavailable(self.error or "NYSE calendar not loaded")

    async def _refresh(self, today: date) -> None:
        source = self._source()
        try:
            table = await self._export(today - BACK, today + AHEAD)
        except CalendarUnavailable as exc:
            self._failed_at = time.monotonic()
            self.error = str(exc)
            keeps = self.table is not None and _usable(self.table, today)
            log.warning(
                "NYSE calendar refresh failed",
                error=self.error,
                keeping_until=self.table.last.isoformat() if keeps and self.table else None,
                retry_in_s=self.retry_s,
            )
            return
        self._failed_at = None
        self.error = None
        self.table = table
        self._exported_for = table.source if source is None else source
        log.info("NYSE calendar loaded", first=table.first.isoformat(),
                 last=table.last.isoformat(), sessions=len(table), source=table.source)  # fmt: skip
        await self._store(table)

    async def _cached(self) -> SessionTable | None:
        if self.redis is None:
            return None
        try:
            # GETRANGE: never more than a table can need, whatever the key holds
            raw = await self.redis.getrange(keys.CALENDAR_NYSE, 0, MAX_BYTES)
            return decode(raw) if raw else None
        except CalendarDataError as exc:
            log.warning("cached NYSE calendar refused; exporting a new one", error=str(exc))
        except Exception as exc:  # Redis down or refusing: the child still answers
            log.warning("cached NYSE calendar unreadable", error=str(exc))
        return None

    async def _store(self, table: SessionTable) -> None:
        if self.redis is None:
            return
        try:
            await self.redis.set(keys.CALENDAR_NYSE, table.encode())
        except Exception as exc:  # only the next restart's shortcut is lost
            log.warning("NYSE calendar not cached in redis", error=str(exc))


def _fresh(table: SessionTable | None, today: date, source: str | None) -> bool:
    """Enough days ahead, and from the package installed now (an upgrade brings new holidays
    and closures: the next check exports again, no restart needed)."""
    return (
        table is not None
        and table.first <= today
        and table.last - today >= RUNWAY
        and (source is None or table.source == source)
    )


def _usable(table: SessionTable, today: date) -> bool:
    """Still answers for today and the longest NYSE closure after it (next_open needs that)."""
    return table.first <= today and table.last >= today + timedelta(days=MAX_CLOSED_DAYS + 1)
