"""The real daemon against the embedded simulator on a manual clock, one tick at a time: the
scenario, the daemon's process and the stepper the tick-by-tick tests (rules, levels, outcomes,
the symbol page) share, so which ticks the daemon sees does not depend on the machine's speed."""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from gex_alertd import keys
from gex_alertd.connections import entries
from gex_alertd.sources.simulator.clock import ManualClock
from tests.support.outbox import all_entries
from tests.support.wait import eventually

# the simulated day starts two hours back: a daemon refuses an as_of older than its retention
# (1d in these tests) or ahead of its clock, so a fixed date would age out of the window
START = (datetime.now(UTC) - timedelta(hours=2)).replace(minute=0, second=0, microsecond=0)


def calm_scenario(spots: dict[str, float], events: str) -> str:
    """A scenario from START, one tick a second, in which prices move only by `events` (YAML
    list items): no volatility, no trades."""
    lines = [f"start: {START.isoformat().replace('+00:00', 'Z')}", "tick_s: 1", "symbols:"]
    lines += [
        f"  {s}: {{spot: {spot:g}, annual_vol: 0, trades_per_s: 0}}" for s, spot in spots.items()
    ]
    return "\n".join([*lines, "events:", events.strip("\n")]) + "\n"


async def start_daemon(cfg: Path, log: Path) -> asyncio.subprocess.Process:
    """`gex-alertd run` on `cfg` in its folder, its output appended to `log`."""
    with log.open("ab") as out:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gex_alertd", "run", "--config", str(cfg), "--no-uvloop",
            stdout=out, stderr=subprocess.STDOUT, cwd=cfg.parent,
        )  # fmt: skip


async def outbox_alerts(r: aioredis.Redis) -> list[dict[str, Any]]:
    """Every alert in the outboxes, as the JSON the daemon stored."""
    return [json.loads(f[b"event"]) for f in await all_entries(r)]


class Stepper:
    """Moves the simulation one tick at a time, and only once the daemon has stored every
    symbol's snapshot of the tick: the daemon sees every tick, however slowly it runs, so the
    history (and the alerts it implies) is the same on every machine."""

    def __init__(
        self, clock: ManualClock, r: aioredis.Redis, log: Path, symbols: Sequence[str]
    ) -> None:
        self.clock = clock
        self.r = r
        self.log = log
        self.symbols = list(symbols)

    async def stored(self, daemon: asyncio.subprocess.Process) -> bool:
        """Whether every symbol's snapshot of the current tick is stored."""
        assert daemon.returncode is None, self.log.read_text()[-3000:]
        as_of = self.clock.start + timedelta(seconds=math.floor(self.clock.now() + 1e-9))
        want = int(as_of.timestamp() * 1000)
        for sym in self.symbols:
            last = entries(await self.r.xrevrange(keys.snap(sym), count=1))
            if not last or int(last[0][0].split(b"-")[0]) < want:
                return False
        return True

    async def run_to(self, t: float, daemon: asyncio.subprocess.Process) -> None:
        while True:
            what = f"every symbol's snapshot of sim t={self.clock.now():g}s"
            await eventually(lambda: self.stored(daemon), what)
            if self.clock.now() >= t:
                return
            self.clock.advance(1.0)
