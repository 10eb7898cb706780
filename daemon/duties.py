"""Calendar and periodic duties on APScheduler 3.x: the few jobs that are not polls.

Polls run on the due-time queue (gex_alertd.pool); APScheduler keeps what it is good at:
  - `session`: the market-hours gate. One job at the next open or close instant (from the
    NYSE calendar: holidays, early closes, pre/post-market), which pauses or resumes the
    poll queue and re-arms itself for the next transition. Nothing is checked per poll;
  - `heartbeat`: the membership beat (gex_alertd.ownership) every few seconds;
  - `gauges`: the engine's figures into /metrics and the systemd STATUS= line.
A job only starts its coroutine as a task of ours and returns, one at a time per duty:
APScheduler's asyncio executor cancels running jobs at shutdown (the old "Error running job"
lines), while `stop()` here lets a running duty finish first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from gex_alertd.ops.calendar import NEW_YORK, MarketHours
from gex_alertd.stopping import CANCELLED_END_S, end_tasks

log = structlog.get_logger()

Duty = Callable[[], Awaitable[None]]


class Duties:
    def __init__(self) -> None:
        self._scheduler = AsyncIOScheduler(timezone=UTC)
        self._running: dict[str, asyncio.Task[None]] = {}
        self._stopping = False

    def start(self) -> None:
        self._scheduler.start()

    def every(self, name: str, seconds: float, duty: Duty) -> None:
        """Run `duty` every `seconds` (first run one period from now), one run at a time."""
        self._add(name, IntervalTrigger(seconds=seconds, timezone=UTC), duty, coalesce=True)

    def at(self, name: str, when: datetime, duty: Duty) -> None:
        """Run `duty` once at `when` (replacing any pending run of that name)."""
        self._add(name, DateTrigger(run_date=when, timezone=UTC), duty)

    def _add(self, name: str, trigger: BaseTrigger, duty: Duty, **options: Any) -> None:
        # misfire_grace_time None: a run the loop was too busy to start on time still runs
        self._scheduler.add_job(
            self._launch,
            trigger,
            args=[name, duty],
            id=name,
            name=name,
            replace_existing=True,
            max_instances=1,
            misfire_grace_time=None,
            **options,
        )

    def cancel(self, name: str) -> None:
        if self._scheduler.get_job(name) is not None:
            self._scheduler.remove_job(name)

    async def _launch(self, name: str, duty: Duty) -> None:
        # a coroutine, so APScheduler runs it on the loop (a plain function would go to its
        # thread pool); it only starts the duty and returns, so there is nothing to cancel
        if self._stopping:
            return
        running = self._running.get(name)
        if running is not None and not running.done():
            return  # still at it: one run at a time, and no log line per skipped period
        self._running[name] = asyncio.create_task(self._guarded(name, duty))

    async def _guarded(self, name: str, duty: Duty) -> None:
        try:
            await duty()
        except Exception:
            log.exception("duty failed", duty=name)

    async def stop(self, grace_s: float = 10.0) -> None:
        self._stopping = True
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        _cancelled, left = await end_tasks(self._running.values(), grace_s=grace_s)
        if left:
            log.warning("duties did not end when cancelled", timeout_s=CANCELLED_END_S)


class SessionGate:
    """Pauses and resumes the poll queue at the market's open and close instants."""

    def __init__(
        self,
        duties: Duties,
        hours: MarketHours,
        *,
        pause: Callable[[], None],
        resume: Callable[[], None],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.duties = duties
        self.hours = hours
        self._pause = pause
        self._resume = resume
        self._clock = clock
        self.open: bool | None = None
        self.next_change: datetime | None = None

    def apply(self) -> None:
        """Set the gate for now and arm the job for the next transition."""
        now = self._clock()
        is_open = self.hours.is_open(now)
        if is_open:
            self._resume()
            win = self.hours.window(now.astimezone(NEW_YORK).date())
            # `always` never closes; the window of a day we are inside of exists when open
            change = win.end if win is not None else None
        else:
            self._pause()
            change = self.hours.next_open(now)
        if is_open != self.open:
            log.info("market session", open=is_open, next_change=change and change.isoformat())
        self.open = is_open
        self.next_change = change
        if change is not None and change > now:
            # a hair past the instant, so is_open() already answers for the new side (an instant
            # already past would re-arm for the past and run on every loop turn)
            self.duties.at("session", change + timedelta(milliseconds=5), self._tick)

    async def _tick(self) -> None:
        self.apply()
