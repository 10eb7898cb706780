"""The poll engine: a due-time queue of watch targets and a fixed pool of poll workers.

Why not one scheduler job per target: at thousands of targets or sub-second intervals the cost
was per fire (APScheduler bookkeeping, "skipped"/"missed" log lines, a task per fire), and a
target whose poll was still running simply lost its turn. Here a worker that is free takes the
most overdue target, polls it and puts it back at its next due time, so:
  - under overload every target is still served, in turn, and the achieved interval stretches
    evenly (a late target is rescheduled one interval after its poll started, not at its old
    cadence, so nobody catches up in a burst);
  - nothing is skipped and nothing logs per poll;
  - one target is never polled twice at once (it is out of the queue while a worker has it);
  - without overload the cadence does not drift: the next due time is the previous one plus
    the interval (plus up to `jitter_s`, so many targets do not fire on the same tick).

Only targets this daemon owns are queued (`own`): several daemons sharing a Redis split the
watchlist between them (gex_alertd.ownership). The market-hours gate pauses the whole queue.

Stop: no poll starts after `stop()`; polls already running finish (their commit included) up
to a grace period; idle workers simply return.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol

import structlog
from structlog.contextvars import STRUCTLOG_KEY_PREFIX

from gex_alertd.config import WatchTarget
from gex_alertd.duequeue import DueQueue
from gex_alertd.stopping import CANCELLED_END_S, end_tasks

log = structlog.get_logger()

# the symbol on every log line inside a poll, library lines (aiohttp, redis) too: structlog's
# merge_contextvars takes every ContextVar named with its prefix, so the poll sets and resets
# this one var itself, not bind_contextvars' name lookups and dict of tokens (0.6 us a poll)
_SYMBOL: ContextVar[Any] = ContextVar(f"{STRUCTLOG_KEY_PREFIX}symbol", default=Ellipsis)

# weight of the newest interval in the achieved-interval average: about the last 5 polls
_EWMA = 0.2
STAGGER_MAX_S = 15.0
# what is due this close to now counts as due: timers may fire a little early (libuv's, under
# uvloop, count whole milliseconds), and waking once for the polls of the next few ms instead
# of once each saves loop turns; never more than a tenth of the shortest interval
TIMER_SLACK_S = 0.02
# with jitter, a poll's due time is random within `jitter_s` anyway, so the slack grows to a
# quarter of the smallest jitter (up to SLACK_MAX_S): at 5,000 symbols every 15 s (333 polls a
# second) a poll that starts alone pays its own loop turns and a commit batch of one; waking
# for the next 250 ms at once took the daemon from 0.72-0.84 to 0.52-0.54 ms of CPU per stored
# snapshot (bench/README.md, scale)
JITTER_SLACK = 0.25
SLACK_MAX_S = 0.25


class Pollable(Protocol):
    target: WatchTarget
    next_attempt: float  # pool clock time before which a retry is pointless (backoff)
    disabled: str | None  # a permanent problem: not queued again until the config changes

    async def poll(self) -> str: ...


@dataclass(slots=True)
class Timing:
    """A target's schedule and what it actually got."""

    anchor: float  # the cadence point the next due time is computed from (without jitter)
    last_start: float | None = None
    achieved: float | None = None  # moving average of start-to-start intervals
    polls: int = 0
    last_outcome: str | None = None


@dataclass(frozen=True)
class PoolStats:
    targets: int  # configured
    owned: int
    queued: int
    running: int
    paused: bool
    overdue_s: float
    target_interval_s: float | None  # mean over owned targets
    achieved_interval_s: float | None  # mean over owned targets that were polled twice


def spread(key: str) -> float:
    """A stable fraction in [0, 1) per key, evenly spread however alike the keys are."""
    digest = hashlib.blake2b(key.encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big") / 2**32


def stagger(target: WatchTarget) -> float:
    """Where in its first interval a target starts (after start-up, a market open, a hand-over
    to this daemon): spread over the interval, up to STAGGER_MAX_S, so thousands of targets
    do not all poll in the same second and then again together every interval (a load spike
    for the machine and the key's budget). `jitter_s: 0` asks for no spreading at all."""
    if target.jitter_s <= 0:
        return 0.0
    return min(target.interval_s, STAGGER_MAX_S) * spread(target.key)


def slack(targets: Iterable[WatchTarget]) -> float:
    """How early a due target may be taken: TIMER_SLACK_S, or JITTER_SLACK of the smallest
    `jitter_s` when that is more (at most SLACK_MAX_S); never more than a tenth of the shortest
    interval."""
    ts = list(targets)
    shortest = min((t.interval_s for t in ts), default=1.0)
    least_jitter = min((t.jitter_s for t in ts), default=0.0)
    wanted = min(max(TIMER_SLACK_S, JITTER_SLACK * least_jitter), SLACK_MAX_S)
    return min(wanted, shortest / 10)


class PollPool:
    def __init__(
        self,
        workers: int,
        *,
        clock: Callable[[], float] | None = None,
        rng: Callable[[], float] = random.random,
    ) -> None:
        if workers < 1:
            raise ValueError(f"a poll pool needs at least one worker, got {workers}")
        self.workers = workers
        self._clock = clock
        self._rng = rng
        self._queue: DueQueue[str] = DueQueue()
        self._pollers: dict[str, Pollable] = {}
        self._owned: set[str] = set()
        self._timing: dict[str, Timing] = {}
        self._running: set[str] = set()
        self._idle: deque[asyncio.Future[str | None]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_due: float | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._busy: set[asyncio.Task[None]] = set()
        self._paused = False
        self._stopping = False
        self._slack = TIMER_SLACK_S
        self._loop: asyncio.AbstractEventLoop | None = None

    # --- the target set ------------------------------------------------------------------

    @property
    def pollers(self) -> Mapping[str, Pollable]:
        return self._pollers

    @property
    def owned(self) -> frozenset[str]:
        return frozenset(self._owned)

    def now(self) -> float:
        if self._clock is not None:
            return self._clock()
        # the loop looked up once, not per call (a getpid() system call each on Python 3.11)
        loop = self._loop
        if loop is None or loop.is_closed():
            loop = self._loop = asyncio.get_running_loop()
        return loop.time()

    def replace(self, pollers: Iterable[Pollable]) -> list[str]:
        """Swap the target set (start-up, SIGHUP). A target whose entry did not change keeps
        its poller (backoff, pending snapshots) and its place in the queue; return the keys
        that are new or changed (the caller decides whether this daemon owns them)."""
        wanted = {p.target.key: p for p in pollers}
        changed = []
        for key in list(self._pollers):
            if key not in wanted:
                self._forget(key)
        for key, poller in wanted.items():
            old = self._pollers.get(key)
            if old is not None and old.target == poller.target:
                continue
            if old is not None:
                self._forget(key)
            self._pollers[key] = poller
            changed.append(key)
        self._slack = slack(p.target for p in self._pollers.values())
        return changed

    def own(self, keys: Iterable[str], *, delays: Mapping[str, float] | None = None) -> None:
        """Queue exactly these targets (the ones this daemon owns). A target newly owned is
        due after its `delays` entry (a hand-over from a live daemon waits for it to let go),
        else over its first interval (`stagger`)."""
        wanted = {k for k in keys if k in self._pollers}
        now = self.now()
        for key in self._owned - wanted:
            self._owned.discard(key)
            self._queue.remove(key)
            self._timing.pop(key, None)
        for key in sorted(wanted - self._owned):
            self._owned.add(key)
            if delays is not None and key in delays:
                due = now + delays[key]
            else:
                due = now + stagger(self._pollers[key].target)
            self._timing[key] = Timing(anchor=due)
            if key not in self._running:  # a poll still running requeues itself when done
                self._queue.push(key, due)
        self._dispatch()

    def _forget(self, key: str) -> None:
        del self._pollers[key]
        self._owned.discard(key)
        self._queue.remove(key)
        self._timing.pop(key, None)

    # --- the gate ------------------------------------------------------------------------

    def pause(self) -> None:
        """Market closed: no poll starts until `resume`."""
        self._paused = True
        self._arm()

    def resume(self) -> None:
        """Market open: every owned target is due over its first interval, not at whatever time
        it had before the pause (an overnight pause is not lateness)."""
        if not self._paused:
            return
        self._paused = False
        now = self.now()
        for key in self._owned:
            due = now + stagger(self._pollers[key].target)
            self._timing[key].anchor = due
            if key not in self._running:
                self._queue.push(key, due)
        self._dispatch()

    @property
    def paused(self) -> bool:
        return self._paused

    # --- workers -------------------------------------------------------------------------

    def start(self) -> None:
        for i in range(self.workers):
            self._tasks.append(asyncio.create_task(self._work(), name=f"poll-worker-{i}"))

    async def stop(self, grace_s: float = 10.0) -> None:
        """Start no poll, let running ones finish (up to `grace_s`), end the workers."""
        self._stopping = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._idle:
            fut = self._idle.popleft()
            if not fut.done():
                fut.set_result(None)
        cancelled, left = await end_tasks(self._tasks, grace_s=grace_s)
        if cancelled:
            log.warning("polls still running at stop were cancelled", polls=len(cancelled))
        if left:
            log.warning("polls did not end when cancelled", timeout_s=CANCELLED_END_S)
        self._tasks.clear()

    async def _work(self) -> None:
        while True:
            key = await self._take()
            if key is None:
                return
            poller = self._pollers.get(key)
            # let go (a fence, a hand-over) between being handed to us and our wake-up
            if poller is None or key not in self._owned:
                continue
            self._running.add(key)
            started = self.now()
            outcome = "crashed"
            token = _SYMBOL.set(poller.target.symbol)
            try:
                outcome = await poller.poll()
            except Exception:
                log.exception("poll crashed", symbol=poller.target.symbol)
            finally:
                _SYMBOL.reset(token)
                self._running.discard(key)
            self._reschedule(key, poller, started, outcome)

    async def _take(self) -> str | None:
        while not self._stopping:
            if not self._paused:
                key = self._queue.pop_due(self.now() + self._slack)
                if key is not None:
                    return key
            fut: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
            self._idle.append(fut)
            self._arm()
            try:
                key = await fut
            except asyncio.CancelledError:
                if fut.done() and not fut.cancelled() and fut.result() is not None:
                    handed = fut.result()
                    assert handed is not None
                    self._queue.push(handed, self.now())  # handed to us as we were cancelled
                raise
            if key is not None:
                return key
        return None

    def _on_timer(self) -> None:
        self._timer = None  # this one has fired: nothing to cancel
        self._timer_due = None
        self._dispatch()

    def _dispatch(self) -> None:
        """Hand every due target to an idle worker, then arm the timer for the next one."""
        if self._stopping:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
                self._timer_due = None
            return
        if not self._paused:
            # within the slack counts as due, or an early wake-up would re-arm for the sliver
            now = self.now() + self._slack
            while self._idle:
                fut = self._idle[0]
                if fut.done():
                    self._idle.popleft()
                    continue
                key = self._queue.pop_due(now)
                if key is None:
                    break
                self._idle.popleft()
                fut.set_result(key)
        # called directly too (each poll's requeue, a hand-over): `_arm` keeps the pending
        # timer when the next due time is still the one it was set for (a poll requeued an
        # interval ahead rarely changes it), else replaces it, never leaving both to fire; a
        # new timer per requeue was a call_later and a cancelled handle left in the loop's heap
        # per poll (200 targets every 1.2 s: 1.16 -> 0.35 call_later per stored snapshot)
        self._arm()

    def _arm(self) -> None:
        due = None if self._paused or not self._idle else self._queue.next_due()
        if due == self._timer_due and self._timer is not None:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            self._timer_due = None
        if due is None or self._stopping:
            return
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(max(0.0, due - self.now()), self._on_timer)
        self._timer_due = due

    def kick(self) -> None:
        """Re-check the queue now (a test that moved its clock forward calls this)."""
        self._dispatch()

    def _reschedule(self, key: str, poller: Pollable, started: float, outcome: str) -> None:
        timing = self._timing.get(key)
        if key not in self._owned or timing is None:
            return  # dropped, or handed to another daemon while it ran
        if self._pollers.get(key) is not poller:
            # its entry changed (a reload) while it ran: `own` left the new poller unqueued
            # because this poll was running, so it is queued now, at the time `own` chose
            if not self._stopping and key not in self._queue:
                self._queue.push(key, timing.anchor)
                if self._idle:
                    self._dispatch()
            return
        if timing.last_start is not None:
            gap = started - timing.last_start
            timing.achieved = gap if timing.achieved is None else (
                _EWMA * gap + (1 - _EWMA) * timing.achieved
            )  # fmt: skip
        timing.last_start = started
        timing.polls += 1
        timing.last_outcome = outcome
        if poller.disabled:
            log.info("watch target no longer polled", target=key, reason=poller.disabled)
            return
        interval = poller.target.interval_s
        anchor = timing.anchor + interval
        if anchor <= started:  # more than an interval late: one interval from this poll
            anchor = started + interval
        timing.anchor = anchor
        due = anchor + poller.target.jitter_s * self._rng()
        # backing off: no point waking before, and a target taken early (the slack) would
        # find itself still backing off and lose a whole interval
        if poller.next_attempt:
            due = max(due, poller.next_attempt + self._slack)
        if not self._stopping:
            self._queue.push(key, due)
            if self._idle:
                self._dispatch()

    # --- what it sees --------------------------------------------------------------------

    def stats(self) -> PoolStats:
        owned = [self._pollers[k].target.interval_s for k in self._owned]
        achieved = [t.achieved for k, t in self._timing.items() if t.achieved is not None]
        return PoolStats(
            targets=len(self._pollers),
            owned=len(self._owned),
            queued=len(self._queue),
            running=len(self._running),
            paused=self._paused,
            overdue_s=0.0 if self._paused else self._queue.overdue(self.now()),
            target_interval_s=sum(owned) / len(owned) if owned else None,
            achieved_interval_s=sum(achieved) / len(achieved) if achieved else None,
        )

    def timing(self, key: str) -> dict[str, object]:
        """Per-target detail for /healthz."""
        poller = self._pollers.get(key)
        t = self._timing.get(key)
        out: dict[str, object] = {
            "owned": key in self._owned,
            "target_interval_s": poller.target.interval_s if poller else None,
        }
        if t is not None:
            due = self._queue.due_at(key)
            out["achieved_interval_s"] = None if t.achieved is None else round(t.achieved, 3)
            out["polls"] = t.polls
            out["running"] = key in self._running
            out["due_in_s"] = None if due is None else round(due - self.now(), 3)
        return out
