"""The calendar duties: the session gate pauses and resumes polling at the NYSE's instants."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from gex_alertd.duties import Duties, SessionGate
from tests.support.nyse import nyse_hours
from tests.support.wait import WAIT_S, eventually


class Switch:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def pause(self) -> None:
        self.calls.append("pause")

    def resume(self) -> None:
        self.calls.append("resume")


def run_date(duties: Duties, name: str) -> datetime:
    job = duties._scheduler.get_job(name)
    assert job is not None, f"no {name} job"
    return job.trigger.run_date


async def test_gate_closed_on_a_weekend_opens_at_monday_open():
    duties = Duties()  # not started: jobs stay pending, the clock is the test's
    switch = Switch()
    now = datetime(2026, 11, 28, 15, 0, tzinfo=UTC)  # Saturday
    gate = SessionGate(
        duties, nyse_hours(), pause=switch.pause, resume=switch.resume, clock=lambda: now
    )
    gate.apply()
    assert switch.calls == ["pause"] and gate.open is False
    monday_open = datetime(2026, 11, 30, 14, 30, tzinfo=UTC)  # 09:30 ET
    assert gate.next_change == monday_open
    assert run_date(duties, "session") == monday_open + timedelta(milliseconds=5)
    # at the open: resumed, and the next change is the close (16:00 ET)
    now = monday_open + timedelta(milliseconds=5)
    gate.apply()
    assert switch.calls == ["pause", "resume"] and gate.open is True
    assert gate.next_change == datetime(2026, 11, 30, 21, 0, tzinfo=UTC)


async def test_early_close_and_premarket_are_the_gate_instants():
    duties = Duties()
    switch = Switch()
    # the day after Thanksgiving 2026 closes at 13:00 ET; with premarket the day starts 04:00
    now = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)  # 03:00 ET
    gate = SessionGate(
        duties,
        nyse_hours(premarket=True),
        pause=switch.pause,
        resume=switch.resume,
        clock=lambda: now,
    )
    gate.apply()
    assert gate.open is False and gate.next_change == datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
    now = datetime(2026, 11, 27, 9, 0, 1, tzinfo=UTC)
    gate.apply()
    assert gate.open is True and gate.next_change == datetime(2026, 11, 27, 18, 0, tzinfo=UTC)


async def test_a_duty_runs_once_at_a_time_and_stop_lets_it_finish():
    duties = Duties()
    release = asyncio.Event()
    runs = {"started": 0, "finished": 0}

    async def slow() -> None:
        runs["started"] += 1
        await release.wait()
        runs["finished"] += 1

    duties.start()
    try:
        await duties._launch("slow", slow)
        await duties._launch("slow", slow)  # still running: not started twice, nothing logged
        await eventually(lambda: runs["started"] == 1, "the duty started")
        assert runs["started"] == 1
        stopping = asyncio.create_task(duties.stop(grace_s=WAIT_S))
        await asyncio.sleep(0)
        assert not stopping.done()  # waits for the running duty
        release.set()
        await asyncio.wait_for(stopping, WAIT_S)
    finally:
        release.set()
    assert runs == {"started": 1, "finished": 1}
    await duties._launch("slow", slow)  # after stop: nothing starts
    assert runs["started"] == 1


async def test_periodic_duties_run_on_the_event_loop():
    duties = Duties()
    seen: list[asyncio.AbstractEventLoop] = []

    async def tick() -> None:
        seen.append(asyncio.get_running_loop())

    duties.every("tick", 0.05, tick)
    duties.start()
    try:
        await eventually(lambda: len(seen) >= 2, "two ticks")
    finally:
        await duties.stop(grace_s=WAIT_S)
    assert set(seen) == {asyncio.get_running_loop()}
