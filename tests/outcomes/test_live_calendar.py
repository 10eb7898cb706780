"""The outcome duty without an NYSE table: no horizon's end is known (the close, and the cap
at it), so the alerts wait, with one log line, and are measured once a refresh succeeds."""

from __future__ import annotations

from datetime import UTC, date, datetime

import redis.asyncio as aioredis
from structlog.testing import capture_logs

from gex_alertd.ops.calendar_load import CalendarUnavailable, NyseCalendar
from gex_alertd.ops.calendar_table import SessionTable
from gex_alertd.outcomes import records
from gex_alertd.outcomes.live import OutcomeDuty
from tests.outcomes.streams import alert, fire, store_path
from tests.outcomes.test_live import CFG, clock_at
from tests.outcomes.test_measure import MIN, MONDAY, et
from tests.support.nyse import nyse_table

T0 = et(*MONDAY, 10, 0)


class Export:
    def __init__(self) -> None:
        self.broken = True
        self.calls = 0

    async def __call__(self, start: date, end: date) -> SessionTable:
        self.calls += 1
        if self.broken:
            raise CalendarUnavailable("NYSE calendar export failed (exit status 1): ImportError")
        return nyse_table()


async def test_alerts_wait_for_the_calendar_then_are_measured(redis: aioredis.Redis) -> None:
    times = [T0 + i * MIN for i in range(361)]  # 10:00 to past the 16:00 close
    await store_path(redis, "SPY", times, [100.0 + 0.01 * (i % 13) for i in range(len(times))])
    ev = alert(T0 + 2 * MIN, details={"direction": "up", "flip": 99.5})
    await fire(redis, ev, ["tty"])
    export = Export()
    calendar = NyseCalendar(
        None, export=export, clock=lambda: datetime(*MONDAY, 12, tzinfo=UTC), retry_s=0
    )
    duty = OutcomeDuty(
        redis, lambda: CFG, lambda key: True, clock=clock_at(T0 + 400 * MIN), calendar=calendar
    )
    with capture_logs() as logs:
        await duty.run_once()
        await duty.run_once()
    assert export.calls == 2  # a refresh tried on each run (retry_s=0 here)...
    waits = [e for e in logs if e["event"] == "alert outcomes wait for the NYSE calendar"]
    assert len(waits) == 1 and "ImportError" in waits[0]["error"]  # ...but one line for it
    assert await redis.hlen(records.outcomes_key("SPY")) == 0 and ev.id in duty.pending
    assert duty.followed_up == 0  # the 5m follow-up waits too: its cap at the close is unknown

    export.broken = False
    with capture_logs() as logs:
        await duty.run_once()
    assert any(e["event"] == "alert outcomes resumed: NYSE calendar loaded" for e in logs)
    raw = await redis.hget(records.outcomes_key("SPY"), ev.id)
    assert isinstance(raw, bytes) and duty.stored == 1 and duty.followed_up == 1
    assert records.decode(raw).outcomes["close"].end_ms == et(*MONDAY, 16, 0)
