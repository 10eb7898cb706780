"""Store simulated history for the README's outcome report example (simulator, not markets).

Runs the embedded simulator on a manual clock through regular sessions (a snapshot every 15 s)
and stores each snapshot the way the daemon does, into the Redis of a config file; then
`gex-alertd outcomes -c FILE --alerts replay` reports on it.

    .venv/bin/python scripts/simulated_history.py --redis redis://127.0.0.1:6379/15 \
        [--symbols SPY,QQQ] [--days 2] [--seed 7]
"""

from __future__ import annotations

import argparse
import asyncio
from datetime import date, datetime, timedelta

import redis.asyncio as aioredis

from gex_alertd.config import RedisConfig, SimulatorOptions
from gex_alertd.model import decode_flow_gex
from gex_alertd.ops.calendar import MarketHours
from gex_alertd.ops.calendar_load import export
from gex_alertd.sources.simulator.clock import ManualClock
from gex_alertd.sources.simulator.embedded import make_simulator
from gex_alertd.store import write_snapshot

STEP_S = 15.0


async def run(url: str, symbols: list[str], days: int, seed: int) -> int:
    day, stored = date(2026, 5, 11), 0
    table = await export(day, day + timedelta(days=2 * days + 30))  # the NYSE sessions
    hours = MarketHours("nyse", table=lambda: table)
    redis = aioredis.Redis.from_url(url)
    cfg = RedisConfig(url=url, retention=None)
    try:
        for _ in range(days):
            while hours.window(day) is None:
                day += timedelta(days=1)
            win = hours.window(day)
            assert win is not None
            clock = ManualClock(start=win.open)
            sim = make_simulator(
                SimulatorOptions(seed=seed + day.toordinal(), cache_s=0), None, clock
            )
            while clock.start + timedelta(seconds=clock.now()) < win.close:
                for sym in symbols:
                    snap = decode_flow_gex(sim.body("flow", sym, None), symbol=sym)
                    stored += await write_snapshot(redis, snap, None, cfg)
                clock.advance(STEP_S)
            day += timedelta(days=1)
    finally:
        await redis.aclose()
    return stored


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--redis", required=True)
    ap.add_argument("--symbols", default="SPY,QQQ")
    ap.add_argument("--days", type=int, default=2)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    n = asyncio.run(run(args.redis, args.symbols.split(","), args.days, args.seed))
    print(f"stored {n} simulated snapshots at {datetime.now():%H:%M:%S}")


if __name__ == "__main__":
    main()
