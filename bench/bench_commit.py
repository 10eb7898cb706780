"""The per-snapshot cost of the atomic commit (snapshot + rule state + outbox in one script).

Against a baseline measured in the same run on the same snapshots: a plain `XADD` of the
snapshot (`store.write_snapshot`), which is what storing without rules would cost. Both run
one snapshot at a time (as the daemon does per symbol) against a private redis-server, with
AOF off (CPU and round trips) and with `appendfsync always` (every write on disk).

    python -m bench.bench_commit [--snapshots 2000] [--symbols 4] [--quick] [--json out.json]

`--quick` (what `make bench` runs): 400 snapshots per mode.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
import structlog
from rich.console import Console
from rich.table import Table

from bench.bench_replay import RULES, history
from gex_alertd import keys, store
from gex_alertd.commit import Committer
from gex_alertd.config import RedisConfig
from tests.support.redis_server import RedisServer


def _summary(samples: list[float]) -> dict[str, float]:
    samples = sorted(samples)
    return {
        "median_us": round(statistics.median(samples) * 1e6, 1),
        "p99_us": round(samples[int(len(samples) * 0.99) - 1] * 1e6, 1),
        "mean_us": round(statistics.fmean(samples) * 1e6, 1),
    }


async def one_mode(aof: bool, n: int, n_symbols: int) -> dict[str, Any]:
    per = n // n_symbols
    snaps = [s for i in range(n_symbols) for s in history(f"S{i:02d}", per, seed=i)]
    cfg = RedisConfig(retention=None)
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp), aof=aof)
        server.start()
        redis = aioredis.Redis.from_url(server.url)
        try:
            base, atomic = [], []
            for s in snaps:
                t = time.perf_counter()
                await store.write_snapshot(redis, s, None, cfg)
                base.append(time.perf_counter() - t)
            await redis.flushall()
            committer = Committer(redis, RULES, cfg)
            alerts = 0
            for s in snaps:
                t = time.perf_counter()
                res = await committer.commit(s, None)
                atomic.append(time.perf_counter() - t)
                alerts += len(res.alerts)
            outbox = sum([await redis.xlen(keys.outbox(f"S{i:02d}")) for i in range(n_symbols)])
        finally:
            await redis.aclose()
            server.stop()
    b, a = _summary(base), _summary(atomic)
    return {
        "aof": "appendfsync always" if aof else "off",
        "snapshots": len(snaps),
        "baseline_xadd": b,
        "atomic_commit": a,
        "ratio_median": round(a["median_us"] / b["median_us"], 2),
        "alerts": alerts,
        "outbox_entries": outbox,
    }


QUICK_SNAPSHOTS = 400  # per mode; p99 still rests on 4 samples


def main(argv: list[str] | None = None) -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--snapshots", type=int, default=2000)
    ap.add_argument("--symbols", type=int, default=4)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--quick", action="store_true", help=f"{QUICK_SNAPSHOTS} snapshots")
    args = ap.parse_args(argv)
    n = min(args.snapshots, QUICK_SNAPSHOTS) if args.quick else args.snapshots
    results = []
    for aof in (False, True):
        t = time.monotonic()
        results.append(asyncio.run(one_mode(aof, n, args.symbols)))
        results[-1]["wall_s"] = round(time.monotonic() - t, 1)
    table = Table(
        title=f"atomic commit vs plain XADD, {results[0]['snapshots']} 200-strike snapshots, "
        f"{len(RULES)} rules"
    )
    for col in ("AOF", "XADD median", "XADD p99", "commit median", "commit p99", "ratio", "wall s"):
        table.add_column(col, justify="right")
    for r in results:
        b, a = r["baseline_xadd"], r["atomic_commit"]
        table.add_row(
            r["aof"], f"{b['median_us']} us", f"{b['p99_us']} us",
            f"{a['median_us']} us", f"{a['p99_us']} us", f"{r['ratio_median']}x", f"{r['wall_s']}",
        )  # fmt: skip
    console = Console()
    console.print(table)
    console.print(
        f"alerts committed: {results[0]['alerts']} (outbox {results[0]['outbox_entries']})"
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
