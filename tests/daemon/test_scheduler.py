"""The APScheduler wrapper: fractional intervals, one run at a time, the gate, a clean stop."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from gex_alertd.config import WatchTarget
from gex_alertd.ops import metrics
from gex_alertd.scheduler import PollScheduler
from tests.support.wait import WAIT_S, eventually


class SlowPoller:
    """Stands in for a Poller: the scheduler only needs `.target` and `poll()`."""

    def __init__(
        self, key: str, interval: float, hold: float = 0.0, release: asyncio.Event | None = None
    ):
        self.target = WatchTarget(key, None, interval, 0.0)
        self.hold = hold
        self.release = release  # when given, a poll runs until it is set instead of `hold`
        self.started = 0
        self.finished = 0
        self.running = 0
        self.max_running = 0
        self.began = asyncio.Event()

    async def poll(self) -> str:
        self.started += 1
        self.began.set()
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            if self.release is not None:
                await self.release.wait()
            else:
                await asyncio.sleep(self.hold)
        finally:
            self.running -= 1
        self.finished += 1
        return "stored"


async def test_fractional_interval_and_one_instance_at_a_time():
    fast = SlowPoller("SPY", 0.05)
    release = asyncio.Event()
    slow = SlowPoller("QQQ", 0.05, release=release)  # runs until released: ticks must skip it
    skipped = metrics.POLLS.labels("skipped_busy")
    skipped_before = skipped._value.get()
    sched = PollScheduler()
    sched.start([fast, slow])  # type: ignore[list-item]  # SlowPoller stands in for Poller
    # the interval is not rounded to whole seconds; counting polls in a time window would
    # measure the machine's speed instead
    assert sched._scheduler.get_job("SPY").trigger.interval == timedelta(seconds=0.05)
    await eventually(lambda: fast.started >= 5, "5 polls of SPY")
    await eventually(
        lambda: skipped._value.get() >= skipped_before + 2, "2 ticks of QQQ skipped while busy"
    )
    stopping = asyncio.create_task(sched.stop(grace_s=WAIT_S))
    await asyncio.sleep(0)
    release.set()
    await stopping
    assert slow.started == 1 and slow.max_running == 1
    assert slow.started == slow.finished  # stop waited for the run in flight


async def test_stop_lets_an_inflight_poll_finish():
    release = asyncio.Event()
    p = SlowPoller("SPY", 10, release=release)
    sched = PollScheduler()
    sched.start([p])  # type: ignore[list-item]  # SlowPoller stands in for Poller
    await asyncio.wait_for(p.began.wait(), timeout=WAIT_S)
    stopping = asyncio.create_task(sched.stop(grace_s=WAIT_S))
    await asyncio.sleep(0.05)
    assert not stopping.done()  # held by the poll, which cannot end before the release
    release.set()
    await stopping
    assert p.finished == 1


async def test_closed_market_gate_means_no_polls():
    p = SlowPoller("SPY", 0.05)
    asked: list[datetime] = []

    def closed(now: datetime) -> bool:
        asked.append(now)
        return False

    sched = PollScheduler(gate=closed)
    sched.start([p])  # type: ignore[list-item]  # SlowPoller stands in for Poller
    await eventually(lambda: len(asked) >= 3, "3 ticks to consult the gate")
    await sched.stop()
    assert p.started == 0


async def test_replace_keeps_unchanged_entries_and_drops_removed_ones():
    a, b = SlowPoller("SPY", 0.05), SlowPoller("QQQ", 0.05)
    sched = PollScheduler()
    sched.start([a, b])  # type: ignore[list-item]  # SlowPoller stands in for Poller
    a2 = SlowPoller("SPY", 0.05)  # same target: the running poller (and its state) stays
    sched.replace([a2])  # type: ignore[list-item]  # SlowPoller stands in for Poller
    assert sched.pollers["SPY"] is a
    assert "QQQ" not in sched.pollers
    before = b.started
    # QQQ would have been due on each of these ticks
    await eventually(lambda: a.started >= 3, "3 polls of SPY")
    await sched.stop()
    assert b.started == before
    assert a2.started == 0 and a.started > 0
