"""The poll engine on a controlled clock: who is polled when, under load and at rest.

The pool reads time from `clock`; here that is a number the test (or a poll standing in for
slow work) moves forward, so nothing depends on how fast the machine is. `kick()` makes the
pool look at the queue after the test moved the clock.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import logging
from collections import Counter

import structlog

from gex_alertd.config import WatchTarget
from gex_alertd.ops import logging as ops_logging
from gex_alertd.pool import SLACK_MAX_S, TIMER_SLACK_S, PollPool, slack
from tests.support.wait import WAIT_S, eventually


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Target:
    """Stands in for a Poller: records when it was polled; `cost` moves the clock."""

    def __init__(
        self, key: str, interval: float, clock: Clock, log: list[tuple[str, float]], cost=0.0
    ):
        self.target = WatchTarget(key, None, interval, 0.0)
        self.next_attempt = 0.0
        self.disabled: str | None = None
        self.clock = clock
        self.log = log
        self.cost = cost
        self.hold: asyncio.Event | None = None
        self.running = 0
        self.max_running = 0

    async def poll(self) -> str:
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        self.log.append((self.target.key, self.clock.t))
        try:
            if self.hold is not None:
                await self.hold.wait()
            self.clock.t += self.cost
            await asyncio.sleep(0)  # a real poll awaits I/O: let the others run
        finally:
            self.running -= 1
        return "stored"


def make(n: int, interval: float, *, workers: int = 1, cost: float = 0.0):
    clock = Clock()
    log: list[tuple[str, float]] = []
    targets = [Target(f"S{i:04d}", interval, clock, log, cost) for i in range(n)]
    pool = PollPool(workers, clock=clock, rng=lambda: 0.0)
    pool.replace(targets)
    return pool, clock, targets, log


async def test_overload_serves_every_target_in_turn_and_stretches_evenly():
    # 10 targets want a poll every 10 s; one worker needs 2 s per poll: capacity is half the
    # demand, so each target should get ~20 s, all alike, and nobody is skipped
    pool, _clock, targets, log = make(10, 10.0, cost=2.0)
    pool.start()
    pool.own([t.target.key for t in targets])
    try:
        await eventually(lambda: len(log) >= 60, "60 polls")
    finally:
        await pool.stop(grace_s=WAIT_S)
    rounds = [log[i : i + 10] for i in range(0, 60, 10)]
    for r in rounds:
        assert sorted(k for k, _ in r) == sorted(t.target.key for t in targets), r
    # after the first round every target's start-to-start interval is the same 20 s
    starts: dict[str, list[float]] = {}
    for key, at in log[:60]:
        starts.setdefault(key, []).append(at)
    # (from the second poll on: the first round starts at the spread start times)
    gaps = {round(b - a, 6) for s in starts.values() for a, b in itertools.pairwise(s[1:])}
    assert gaps == {20.0}
    st = pool.stats()
    assert st.achieved_interval_s is not None and abs(st.achieved_interval_s - 20.0) < 1e-6


async def test_at_rest_the_cadence_does_not_drift():
    pool, clock, targets, log = make(2, 10.0)
    targets[1].target = WatchTarget("S0001", None, 30.0, 0.0)
    pool.replace(targets)
    pool.start()
    pool.own(["S0000", "S0001"])
    try:
        await eventually(lambda: len(log) == 2, "both polled at start")
        assert {k for k, _ in log} == {"S0000", "S0001"}
        await eventually(lambda: pool.stats().running == 0, "polls done")
        assert pool._queue.due_at("S0000") == 1010.0 and pool._queue.due_at("S0001") == 1030.0
        clock.t = 1010.5  # half a second late
        pool.kick()
        await eventually(lambda: len(log) == 3, "S0000 again")
        await eventually(lambda: pool._queue.due_at("S0000") is not None, "requeued")
        # the next due time keeps the cadence (1020), it does not slide to 1020.5
        assert pool._queue.due_at("S0000") == 1020.0
        assert log[2] == ("S0000", 1010.5)
        # nothing else is due: a kick polls nothing
        pool.kick()
        await asyncio.sleep(0)
        assert len(log) == 3
        assert pool.stats().overdue_s == 0.0
        clock.t = 1045.0  # far behind: S0000 is due at 1020 (25 s late), S0001 at 1030
        assert pool.stats().overdue_s == 25.0
        pool.kick()
        await eventually(lambda: len(log) == 5, "both again")
        assert [k for k, _ in log[3:]] == ["S0000", "S0001"]  # the most overdue first
        await eventually(lambda: pool.stats().queued == 2, "requeued")
        # more than an interval late: one interval from this poll, no burst to catch up
        assert pool._queue.due_at("S0000") == 1055.0
    finally:
        await pool.stop(grace_s=WAIT_S)


async def first_poll_held(interval: float, workers: int):
    """A pool of one target whose first poll is running and waits for `hold`."""
    pool, clock, targets, log = make(1, interval, workers=workers)
    hold = asyncio.Event()
    targets[0].hold = hold
    pool.start()
    pool.own(["S0000"])
    await eventually(lambda: targets[0].running == 1, "first poll running")
    return pool, clock, targets, log, hold


async def test_a_target_is_never_polled_twice_at_once():
    pool, clock, targets, log, hold = await first_poll_held(1.0, workers=4)
    try:
        clock.t += 100  # long overdue by now, with three idle workers
        pool.kick()
        await asyncio.sleep(0)
        assert targets[0].running == 1 and len(log) == 1
        hold.set()
        # released, it is requeued overdue and polled again, by one worker
        await eventually(lambda: len(log) == 2, "polled again once released")
        assert log[1] == ("S0000", clock.t)
    finally:
        hold.set()
        await pool.stop(grace_s=WAIT_S)
    assert targets[0].max_running == 1


async def test_log_lines_inside_a_poll_carry_its_symbol_and_none_after_it():
    out = io.StringIO()
    ops_logging.configure("json", "info", out)
    pool, _clock, targets, _log = make(2, 10.0)
    seen: list[object] = []

    def poll_of(target: Target):
        async def poll() -> str:
            seen.append(structlog.contextvars.get_contextvars().get("symbol"))
            logging.getLogger("aiohttp.client").warning("a library line")
            target.disabled = "gone"  # the pool logs that after the poll, in the worker
            return "stored"

        return poll

    for t in targets:
        t.poll = poll_of(t)
    pool.start()
    pool.own(["S0000", "S0001"])
    try:
        await eventually(lambda: len(seen) == 2, "both polls")
        await eventually(lambda: out.getvalue().count("no longer polled") == 2, "the pool's lines")
    finally:
        await pool.stop(grace_s=WAIT_S)
        ops_logging.configure("json", "info", io.StringIO())
    assert sorted(map(str, seen)) == ["S0000", "S0001"]
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    inside = [r for r in records if r["event"] == "a library line"]
    assert sorted(str(r["symbol"]) for r in inside) == ["S0000", "S0001"]
    after = [r for r in records if r["event"] == "watch target no longer polled"]
    assert len(after) == 2 and all("symbol" not in r for r in after)


async def test_backoff_and_disabled_targets():
    pool, _clock, targets, log = make(2, 10.0)
    pool.start()
    pool.own(["S0000", "S0001"])
    try:
        targets[0].next_attempt = 1500.0  # backing off until then
        targets[1].disabled = "404 unknown symbol"
        await eventually(lambda: len(log) == 2, "first polls")
        await eventually(lambda: pool.stats().running == 0, "done")
        # due once the backoff is over even for a pool that takes targets a little early
        assert pool._queue.due_at("S0000") == 1500.0 + pool._slack
        assert "S0001" not in pool._queue  # a permanent problem is not polled again
        assert pool.timing("S0001")["polls"] == 1
    finally:
        await pool.stop(grace_s=WAIT_S)


def test_the_slack_is_a_quarter_of_the_smallest_jitter_within_its_bounds():
    def targets(*spec: tuple[float, float]) -> list[WatchTarget]:
        return [WatchTarget(f"S{i}", None, iv, j) for i, (iv, j) in enumerate(spec)]

    assert slack(targets((15.0, 1.0))) == 0.25
    assert slack(targets((15.0, 0.4), (60.0, 2.0))) == 0.1  # the smallest jitter rules
    assert slack(targets((15.0, 1.0), (15.0, 0.0))) == TIMER_SLACK_S  # one without jitter
    assert slack(targets((15.0, 30.0))) == SLACK_MAX_S
    assert slack(targets((1.0, 1.0))) == 0.1  # never more than a tenth of an interval
    assert slack(targets((0.02, 0.0))) == 0.002
    assert slack([]) == TIMER_SLACK_S


async def test_with_jitter_targets_due_within_the_slack_are_polled_together():
    clock = Clock()
    log: list[tuple[str, float]] = []
    targets = [Target(f"S{i:04d}", 15.0, clock, log) for i in range(3)]
    for t in targets:
        t.target = WatchTarget(t.target.key, None, 15.0, 1.0)
    pool = PollPool(4, clock=clock, rng=lambda: 0.0)
    pool.replace(targets)
    assert pool._slack == 0.25
    pool.start()
    pool.own([t.target.key for t in targets], delays={"S0000": 1.0, "S0001": 1.2, "S0002": 1.3})
    try:
        clock.t = 1001.0  # S0000 is due, S0001 0.2 s from now, S0002 0.3 s from now
        pool.kick()
        await eventually(lambda: len(log) == 2, "the two due within the slack")
        await asyncio.sleep(0)
        assert sorted(k for k, _ in log) == ["S0000", "S0001"]
        clock.t = 1001.05  # S0002 is now within the slack too
        pool.kick()
        await eventually(lambda: len(log) == 3, "the third")
        # taken early, each keeps its cadence: due again one interval after its own due time
        await eventually(lambda: pool.stats().queued == 3, "requeued")
        assert pool._queue.due_at("S0001") == 1001.2 + 15.0
    finally:
        await pool.stop(grace_s=WAIT_S)


async def test_a_backing_off_target_is_not_taken_before_its_backoff_ends():
    clock = Clock()
    log: list[tuple[str, float]] = []
    target = Target("S0000", 15.0, clock, log)
    target.target = WatchTarget("S0000", None, 15.0, 1.0)
    pool = PollPool(1, clock=clock, rng=lambda: 0.0)
    pool.replace([target])
    # its first poll failed and backs off past its next due time (1015)
    target.next_attempt = 1040.0
    pool.start()
    pool.own(["S0000"], delays={"S0000": 0.0})
    try:
        await eventually(lambda: len(log) == 1, "first poll")
        await eventually(lambda: pool.stats().queued == 1, "requeued")
        clock.t = 1015.0
        pool.kick()
        await eventually(lambda: pool.stats().queued == 1, "still queued")
        await asyncio.sleep(0)
        clock.t = 1040.0 - pool._slack / 2  # within the slack of 1040, but backing off
        pool.kick()
        await asyncio.sleep(0)
        assert len(log) == 1
        clock.t = 1040.0
        pool.kick()
        await eventually(lambda: len(log) == 2, "polled once the backoff is over")
        assert log[1] == ("S0000", 1040.0)
    finally:
        await pool.stop(grace_s=WAIT_S)


async def test_paused_pool_starts_nothing_and_resume_spreads_from_now():
    pool, clock, _targets, log = make(3, 10.0)
    pool.pause()
    pool.start()
    pool.own(["S0000", "S0001", "S0002"])
    try:
        pool.kick()
        await asyncio.sleep(0)
        assert log == [] and pool.stats().paused and pool.stats().overdue_s == 0.0
        clock.t += 3600  # overnight
        pool.resume()
        await eventually(lambda: len(log) == 3, "all polled at the open")
        await eventually(lambda: pool.stats().running == 0, "done")
        # an overnight pause is not lateness: the cadence restarts from the open
        assert {pool._queue.due_at(k) for k in ("S0000", "S0001", "S0002")} == {clock.t + 10.0}
    finally:
        await pool.stop(grace_s=WAIT_S)


async def test_ownership_changes_queue_exactly_the_owned_targets():
    pool, clock, targets, log = make(4, 10.0)
    pool.pause()  # only the queue is looked at here
    pool.start()
    try:
        pool.own(["S0000", "S0001"])
        assert pool.owned == {"S0000", "S0001"} and pool.stats().queued == 2
        pool.own(["S0001", "S0002", "NOPE"], delays={"S0002": 25.0})
        assert pool.owned == {"S0001", "S0002"}  # an unknown key is ignored
        assert "S0000" not in pool._queue
        assert pool._queue.due_at("S0002") == clock.t + 25.0
        # a reload that drops a target forgets it; a changed entry is reported back
        changed = pool.replace([targets[1], Target("S0002", 60.0, clock, log)])
        assert changed == ["S0002"] and pool.owned == {"S0001"}
    finally:
        await pool.stop(grace_s=WAIT_S)


async def test_stop_with_thousands_queued_is_clean():
    clock = Clock()
    log: list[tuple[str, float]] = []
    targets = [Target(f"T{i:05d}", 0.5, clock, log, cost=0.001) for i in range(3000)]
    pool = PollPool(16, clock=clock, rng=lambda: 0.0)
    pool.replace(targets)
    pool.start()
    pool.own([t.target.key for t in targets])
    with structlog.testing.capture_logs() as events:
        await eventually(lambda: len(log) >= 6000, "two rounds of 3,000")
        await pool.stop(grace_s=WAIT_S)
    assert all(t.done() for t in pool._tasks) and not pool._tasks
    assert not [e for e in events if e["log_level"] in ("warning", "error")], events
    counts = Counter(k for k, _ in log)
    assert min(counts.values()) >= 1 and max(counts.values()) - min(counts.values()) <= 2


async def test_a_stop_without_grace_still_sees_its_polls_end():
    # outbox.drain_timeout: 0 gives the pool no grace: the running poll is cancelled at once,
    # and it ends at its next turn of the loop; stop returns once it has, not before (and
    # says nothing of polls that did not end)
    pool, _clock, targets, log = make(2, 10.0, workers=2)
    hold = asyncio.Event()  # never set: the polls run until they are cancelled
    for t in targets:
        t.hold = hold
    pool.start()
    pool.own([t.target.key for t in targets], delays={t.target.key: 0.0 for t in targets})
    workers = list(pool._tasks)
    await eventually(lambda: len(log) == 2, "both polls running")
    with structlog.testing.capture_logs() as events:
        await pool.stop(grace_s=0)
    assert all(t.done() for t in workers)
    assert [t.running for t in targets] == [0, 0]
    assert not [e for e in events if "did not end" in e["event"]], events


def test_targets_start_spread_over_their_first_interval():
    from gex_alertd.pool import STAGGER_MAX_S, stagger

    keys = [f"S{i:04d}" for i in range(5000)]  # alike keys must not bunch together
    offsets = [stagger(WatchTarget(k, None, 15.0, 1.0)) for k in keys]
    assert all(0 <= o < 15.0 for o in offsets)
    per_second = Counter(int(o) for o in offsets)
    assert len(per_second) == 15 and max(per_second.values()) < 1.25 * 5000 / 15
    # a long interval still starts within STAGGER_MAX_S; jitter_s 0 means all together
    assert max(stagger(WatchTarget(k, None, 600.0, 1.0)) for k in keys) < STAGGER_MAX_S
    assert {stagger(WatchTarget(k, None, 15.0, 0.0)) for k in keys} == {0.0}


def pending_timers(pool: PollPool) -> int:
    """Timers of this pool still to fire (asyncio's own list: the loop under test is asyncio's)."""
    loop = asyncio.get_running_loop()
    scheduled = loop._scheduled  # type: ignore[attr-defined]
    return sum(
        1 for h in scheduled if not h.cancelled() and getattr(h._callback, "__self__", None) is pool
    )


async def test_the_pool_keeps_one_timer_however_often_targets_are_requeued():
    # a requeue with idle workers re-dispatches at once; a timer it replaced must not stay
    # armed as well (they piled up and spun the loop: 0.5 cores at 5,000 symbols)
    pool, clock, targets, log = make(20, 10.0, workers=4)
    pool.start()
    pool.own([t.target.key for t in targets])
    try:
        for round_ in range(1, 6):
            polls = 20 * round_
            await eventually(lambda: len(log) == polls, f"round {round_}")  # noqa: B023
            await eventually(lambda: pool.stats().running == 0, "round done")
            assert pending_timers(pool) == 1
            clock.t += 10.0
            pool.kick()
    finally:
        await pool.stop(grace_s=WAIT_S)
    assert pending_timers(pool) == 0


def cancelled_timers(pool: PollPool) -> int:
    """Timers of this pool cancelled but still in the loop's heap (asyncio drops them lazily)."""
    loop = asyncio.get_running_loop()
    scheduled = loop._scheduled  # type: ignore[attr-defined]
    return sum(
        1 for h in scheduled if h.cancelled() and getattr(h._callback, "__self__", None) is pool
    )


async def test_a_requeue_that_leaves_the_next_due_time_alone_keeps_the_pending_timer():
    # each poll's requeue re-dispatches; when the earliest due time is still the one the timer
    # was set for, that timer stays: no new timer and no cancelled one left in the loop's heap
    # per poll (5,000 targets every 15 s made one of each per poll)
    pool, clock, targets, log = make(3, 10.0, workers=2)
    targets[0].hold = hold = asyncio.Event()
    pool.start()
    pool.own([t.target.key for t in targets], delays={"S0000": 0.0, "S0001": 5.0, "S0002": 8.0})
    try:
        await eventually(lambda: targets[0].running == 1, "S0000 polling")
        timer = pool._timer
        assert timer is not None and pool._timer_due == clock.t + 5.0  # S0001's
        hold.set()  # S0000 ends and is requeued 10 s on: S0001 is still the next
        await eventually(lambda: pool.stats().queued == 3, "S0000 requeued")
        assert pool._timer is timer and not timer.cancelled()
        assert pending_timers(pool) == 1 and cancelled_timers(pool) == 0
        clock.t += 5.0  # S0001 due: it is taken, and the timer moves on to S0002
        pool.kick()
        await eventually(lambda: len(log) == 2, "S0001 polled")
        assert pool._timer is not timer and pool._timer_due == clock.t + 3.0
        assert pending_timers(pool) == 1
    finally:
        hold.set()
        await pool.stop(grace_s=WAIT_S)
    assert pending_timers(pool) == 0 and log == [("S0000", 1000.0), ("S0001", 1005.0)]


async def test_a_target_changed_by_a_reload_while_it_polls_is_queued_again():
    pool, clock, _targets, log, hold = await first_poll_held(10.0, workers=2)
    try:
        changed = Target("S0000", 30.0, clock, log)  # SIGHUP: a new interval for it
        assert pool.replace([changed]) == ["S0000"]
        pool.own(["S0000"])
        hold.set()  # the old poll ends: the new entry must be queued, not forgotten
        await eventually(lambda: "S0000" in pool._queue, "the changed target queued")
        clock.t += 31.0
        pool.kick()
        await eventually(lambda: len(log) == 2, "polled again, by the new poller")
    finally:
        hold.set()
        await pool.stop(grace_s=WAIT_S)


async def test_a_target_let_go_in_the_turn_it_was_handed_to_a_worker_is_not_polled():
    # a fence (or a hand-over) drops the targets while a worker has just been handed one
    # (its wake-up is still to come): the worker polled it anyway, for a daemon that had
    # let it go, beside the member now owning it
    pool, _clock, _targets, log = make(1, 10.0)
    pool.start()
    try:
        for _ in range(5):
            await asyncio.sleep(0)  # the worker waits for a target
        pool.own(["S0000"], delays={"S0000": 0.0})  # due now: handed to the idle worker
        pool.own(())  # let go in the same turn
        for _ in range(20):
            await asyncio.sleep(0)
        assert log == [] and pool.stats().running == 0
        pool.own(["S0000"], delays={"S0000": 0.0})  # owned again: polled
        await eventually(lambda: len(log) == 1, "polled once owned again")
    finally:
        await pool.stop(grace_s=WAIT_S)
