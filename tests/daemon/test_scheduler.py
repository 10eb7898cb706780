"""The APScheduler wrapper: fractional intervals, one run at a time, the gate, a clean stop."""

from __future__ import annotations

import asyncio

from gex_alertd.config import WatchTarget
from gex_alertd.scheduler import PollScheduler


class SlowPoller:
    """Stands in for a Poller: the scheduler only needs `.target` and `poll()`."""

    def __init__(self, key: str, interval: float, hold: float = 0.0):
        self.target = WatchTarget(key, None, interval, 0.0)
        self.hold = hold
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
            await asyncio.sleep(self.hold)
        finally:
            self.running -= 1
        self.finished += 1
        return "stored"


async def test_fractional_interval_and_one_instance_at_a_time():
    fast = SlowPoller("SPY", 0.05)
    slow = SlowPoller("QQQ", 0.05, hold=0.3)  # longer than its interval: runs must not overlap
    sched = PollScheduler()
    sched.start([fast, slow])  # type: ignore[list-item]
    await asyncio.sleep(1.0)
    await sched.stop()
    assert fast.started >= 5
    assert slow.max_running == 1
    assert slow.started == slow.finished  # stop waited for the run in flight


async def test_stop_lets_an_inflight_poll_finish():
    p = SlowPoller("SPY", 10, hold=0.5)
    sched = PollScheduler()
    sched.start([p])  # type: ignore[list-item]
    await asyncio.wait_for(p.began.wait(), timeout=5)
    await sched.stop(grace_s=5)
    assert p.finished == 1


async def test_closed_market_gate_means_no_polls():
    p = SlowPoller("SPY", 0.05)
    sched = PollScheduler(gate=lambda now: False)
    sched.start([p])  # type: ignore[list-item]
    await asyncio.sleep(0.4)
    await sched.stop()
    assert p.started == 0


async def test_replace_keeps_unchanged_entries_and_drops_removed_ones():
    a, b = SlowPoller("SPY", 0.05), SlowPoller("QQQ", 0.05)
    sched = PollScheduler()
    sched.start([a, b])  # type: ignore[list-item]
    a2 = SlowPoller("SPY", 0.05)  # same target: the running poller (and its state) stays
    sched.replace([a2])  # type: ignore[list-item]
    assert sched.pollers["SPY"] is a
    assert "QQQ" not in sched.pollers
    before = b.started
    await asyncio.sleep(0.3)
    await sched.stop()
    assert b.started == before
    assert a2.started == 0 and a.started > 0
