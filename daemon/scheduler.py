"""APScheduler 3.x jobs, one per watch entry, gated by market hours.

A job only launches the poll as a task of our own and returns: APScheduler's asyncio executor
cancels running coroutines on shutdown, and a poll that is committing must finish instead
(stop() awaits them). A poll still running when its next tick comes is skipped here, counted,
and not left to APScheduler's max_instances, which would log a warning on every tick.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from gex_alertd.ops import metrics
from gex_alertd.pipeline import Poller

log = structlog.get_logger()

Gate = Callable[[datetime], bool]
# Polls past their lease claim at once. With thousands of symbols due on one tick, unbounded
# polls all fetched and then queued for Redis with their decoded snapshots (~90 KB each) held;
# a bound keeps memory flat and still allows far more than one core can process.
MAX_ACTIVE_POLLS = 32


class PollScheduler:
    def __init__(self, gate: Gate | None = None):
        self.gate = gate
        self._scheduler = AsyncIOScheduler(timezone=UTC)
        self._inflight: dict[str, asyncio.Task[str]] = {}
        self._pollers: dict[str, Poller] = {}
        self._stopping = False
        self._slots = asyncio.Semaphore(MAX_ACTIVE_POLLS)

    @property
    def pollers(self) -> dict[str, Poller]:
        return self._pollers

    def start(self, pollers: list[Poller]) -> None:
        self._scheduler.start()
        self.replace(pollers)

    def replace(self, pollers: list[Poller]) -> None:
        """Swap the job set (SIGHUP): unchanged entries keep their poller and its state."""
        wanted = {p.target.key: p for p in pollers}
        for key in list(self._pollers):
            if key not in wanted:
                self._scheduler.remove_job(key)
                del self._pollers[key]
        for key, poller in wanted.items():
            old = self._pollers.get(key)
            if old is not None and old.target == poller.target:
                continue
            if old is not None:
                self._scheduler.remove_job(key)
            self._pollers[key] = poller
            t = poller.target
            self._scheduler.add_job(
                self._run,
                IntervalTrigger(seconds=t.interval_s, jitter=t.jitter_s or None, timezone=UTC),
                args=[key],
                id=key,
                name=f"poll {key}",
                max_instances=1,
                coalesce=True,
                misfire_grace_time=max(1, int(t.interval_s)),
                # first run right away (spread a little) instead of one interval after start
                next_run_time=datetime.now(UTC)
                + timedelta(seconds=min(t.jitter_s, 1.0) * _spread(key)),
            )

    async def _run(self, key: str) -> None:
        if self._stopping:
            return
        poller = self._pollers.get(key)
        if poller is None:
            return
        if key in self._inflight:
            metrics.POLLS.labels("skipped_busy").inc()
            return
        if self.gate is not None and not self.gate(datetime.now(UTC)):
            return
        self._inflight[key] = asyncio.create_task(self._poll(key, poller))

    async def _poll(self, key: str, poller: Poller) -> str:
        # library log lines (aiohttp, redis) inside this poll carry the symbol too; the task
        # has its own context, so the binding does not leak to other symbols
        structlog.contextvars.bind_contextvars(symbol=poller.target.symbol)
        try:
            async with self._slots:
                if self._stopping:
                    return "stopped"
                return await poller.poll()
        except Exception:
            log.exception("poll crashed", symbol=poller.target.symbol)
            return "crashed"
        finally:
            self._inflight.pop(key, None)

    async def stop(self, grace_s: float = 10.0) -> None:
        """Stop starting polls, then let the running ones finish their commits."""
        self._stopping = True
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        if self._inflight:
            _done, pending = await asyncio.wait(set(self._inflight.values()), timeout=grace_s)
            for t in pending:
                t.cancel()


def _spread(key: str) -> float:
    # a stable fraction in [0, 1) per key, so many symbols do not all fire on the same tick
    return (sum(key.encode()) * 2654435761 % 1000) / 1000
