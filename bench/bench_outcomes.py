"""The outcome report over 100,000 stored snapshots (target: under 10 s).

Builds the history in a private redis-server: 10 symbols, a snapshot every 15 s through the
regular sessions from 2026-05-11, each entry with the daemon's own scalar fields and a real
200-strike block (`store.encode_fields`; a few distinct blocks per symbol, reused: the report
never decodes them, only their size matters to Redis). 2,000 live alerts of three rules go on
the outbox. Then it times `gex-alertd outcomes`' code path end to end (`build_report`: alerts
from the outbox, spot paths, every default horizon, 1,000 baseline moments per rule, the
bootstrap, the regime table), and each stage on its own in the same run:
  paths     the spot paths read by the projecting script (no strike block crosses the wire)
  xrange    baseline: the same entries read by plain XRANGE (redis-py parsing, nothing decoded)
  compute   `compute_report` on paths already in memory

    python -m bench.bench_outcomes [--snapshots 100000] [--symbols 10] [--quick] [--json out.json]

`--quick` (what `make bench` runs) is the same size: writing the history is a pipeline of
XADDs with pre-encoded blocks, a few seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from rich.console import Console
from rich.table import Table

from gex_alertd import config as config_mod
from gex_alertd import keys, store
from gex_alertd.connections import entries
from gex_alertd.model import AlertEvent, FlowGex, StrikeRow, iso_utc, outbox_fields
from gex_alertd.outcomes.alerts import Filter, live_alerts
from gex_alertd.outcomes.command import ReportOptions, build_report
from gex_alertd.outcomes.horizons import DEFAULT_HORIZONS, parse_horizons
from gex_alertd.outcomes.paths import SpotPath, read_path
from gex_alertd.outcomes.report import compute_report
from gex_alertd.outcomes.stats import StreamKey
from gex_alertd.rules.engine import alert_id
from tests.support.nyse import nyse_hours, nyse_sessions
from tests.support.redis_server import RedisServer

TARGET_S = 10.0
BLOCKS = 4  # distinct strike blocks per symbol
ALERTS = 2000
RULE_TYPES = (("flip", "flip_cross"), ("sign", "net_gex_sign"), ("oi", "oi_change"))


def session_times(n: int, step_s: int = 15) -> list[int]:
    """n instants 15 s apart inside NYSE regular sessions from 2026-05-11 (holidays skipped)."""
    hours = nyse_hours()
    out: list[int] = []
    day = date(2026, 5, 11)
    while len(out) < n:
        win = hours.window(day)
        if win is not None:
            t = int(win.open.timestamp() * 1000)
            end = int(win.close.timestamp() * 1000)
            while t < end and len(out) < n:
                out.append(t)
                t += step_s * 1000
        day += timedelta(days=1)
    return out


def _block(symbol: str, spot: float, rng: random.Random) -> bytes:
    rows = [
        StrikeRow(
            strike=round(spot * 0.9 + j * spot * 0.001, 2), call_gex=rng.uniform(0, 1e8),
            put_gex=-rng.uniform(0, 1e8), net_gex=rng.uniform(-1e8, 1e8),
            call_oi=float(rng.randrange(100, 40_000)), put_oi=float(rng.randrange(100, 40_000)),
            call_volume=float(rng.randrange(0, 5000)), put_volume=float(rng.randrange(0, 5000)),
            call_oi_change=float(rng.randrange(-500, 500)),
            put_oi_change=float(rng.randrange(-500, 500)),
        )
        for j in range(200)
    ]  # fmt: skip
    snap = FlowGex(symbol, datetime(2026, 5, 11, tzinfo=UTC), spot, 1e9, strikes=rows)
    return store.encode_fields(snap)[store.F_STRIKES]


async def populate(
    redis: aioredis.Redis, symbols: list[str], per_symbol: int, seed: int = 1
) -> tuple[int, int]:
    """Stores the history and the alerts; returns (snapshots, stored bytes of one entry)."""
    rng = random.Random(seed)
    times = session_times(per_symbol)
    entry_bytes = 0
    for si, sym in enumerate(symbols):
        spot = 100.0 + 40 * si
        blocks = [_block(sym, spot, rng) for _ in range(BLOCKS)]
        net = 2e9
        pipe = redis.pipeline(transaction=False)
        for i, ms in enumerate(times):
            spot *= 1 + rng.gauss(0, 0.0004)
            net += rng.gauss(0, 2e8) - net * 0.002
            as_of = datetime.fromtimestamp(ms / 1000, UTC)
            fields = {
                store.F_AS_OF: as_of.isoformat().replace("+00:00", "Z").encode(),
                store.F_SPOT: repr(round(spot, 2)).encode(),
                store.F_NET: repr(round(net, 2)).encode(),
                store.F_LABEL: b"positive" if net >= 0 else b"negative",
                store.F_FLIP: repr(round(spot * 0.995, 2)).encode(),
                store.F_FLIP_STATUS: b"available",
                store.F_EXPIRY: b"",
                store.F_SYMBOL: sym.encode(),
                store.F_STRIKES: blocks[i % BLOCKS],
            }
            entry_bytes = entry_bytes or sum(len(k) + len(v) for k, v in fields.items())
            pipe.xadd(keys.snap(sym), fields, id=f"{ms}-0")  # type: ignore[arg-type]  # bytes
            if len(pipe) >= 2000:
                await pipe.execute()
        await pipe.execute()
    for k in range(ALERTS):
        sym = symbols[k % len(symbols)]
        rule, type_ = RULE_TYPES[k % len(RULE_TYPES)]
        at = times[rng.randrange(len(times))]
        details: dict[str, Any] = {}
        if type_ == "flip_cross":
            details = {"direction": rng.choice(["up", "down"]), "flip": 100.0 + 40 * (k % 10)}
        elif type_ == "net_gex_sign":
            details = {"direction": rng.choice(["to_positive", "to_negative"])}
        stamp = iso_utc(datetime.fromtimestamp(at / 1000, UTC))
        ev = AlertEvent(
            id=alert_id(rule, sym, None, at), rule=rule, type=type_, symbol=sym, expiry=None,
            severity="info", as_of=stamp, fired_at=stamp, summary="bench", details=details,
        )  # fmt: skip
        await redis.xadd(keys.outbox(sym), outbox_fields(ev, ["tty"]))
    return per_symbol * len(symbols), entry_bytes


async def run(args: argparse.Namespace) -> dict[str, Any]:
    symbols = [f"S{i:02d}" for i in range(args.symbols)]
    per_symbol = args.snapshots // args.symbols
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp), aof=False)
        server.start()
        try:
            redis = aioredis.Redis.from_url(server.url)
            t = time.perf_counter()
            stored, entry_bytes = await populate(redis, symbols, per_symbol)
            populate_s = time.perf_counter() - t
            cfg = config_mod.parse({"redis": {"url": server.url}, "watch": {"symbols": symbols}})
            horizons = parse_horizons(list(DEFAULT_HORIZONS))
            opts = ReportOptions("live", Filter(), [], horizons, 0, 600.0, 1000)
            t = time.perf_counter()
            report, _ = await build_report(cfg, opts, Console(stderr=True, quiet=True))
            report_s = time.perf_counter() - t
            t = time.perf_counter()
            paths: dict[StreamKey, SpotPath] = {
                (s, None): await read_path(redis, s) for s in symbols
            }
            paths_s = time.perf_counter() - t
            t = time.perf_counter()
            n = 0
            for s in symbols:
                lo = "-"
                while True:
                    batch = entries(await redis.xrange(keys.snap(s), min=lo, count=5000))
                    n += len(batch)
                    if len(batch) < 5000:
                        break
                    lo = "(" + batch[-1][0].decode()
            xrange_s = time.perf_counter() - t
            events = await live_alerts(redis, symbols, Filter(), lambda where, msg: None)
            sessions = nyse_sessions()
            t = time.perf_counter()
            compute_report(events, paths, horizons, seed=0, baseline_n=1000, sessions=sessions)
            compute_s = time.perf_counter() - t
            await redis.aclose()
        finally:
            server.stop()
    return {
        "snapshots": stored,
        "entry_bytes": entry_bytes,
        "alerts": len(report.alerts),
        "rows": len(report.rows),
        "populate_s": round(populate_s, 3),
        "report_s": round(report_s, 3),
        "paths_s": round(paths_s, 3),
        "xrange_s": round(xrange_s, 3),
        "xrange_entries": n,
        "compute_s": round(compute_s, 3),
        "target_s": TARGET_S,
        "within_target": report_s < TARGET_S,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--snapshots", type=int, default=100_000)
    ap.add_argument("--symbols", type=int, default=10)
    ap.add_argument("--quick", action="store_true", help="what make bench runs (same size)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    res = asyncio.run(run(args))
    table = Table(title=f"outcome report over {res['snapshots']:,} stored snapshots")
    table.add_column("stage")
    table.add_column("seconds", justify="right")
    table.add_column("note")
    table.add_row("populate", f"{res['populate_s']:.2f}", f"{res['entry_bytes']:,} B per entry")
    table.add_row(
        "report (end to end)", f"{res['report_s']:.2f}",
        f"{res['alerts']:,} alerts, {res['rows']} rows; target < {TARGET_S:g} s: "
        + ("met" if res["within_target"] else "MISSED"),
    )  # fmt: skip
    table.add_row("  paths (projection)", f"{res['paths_s']:.2f}", "spot/net only")
    table.add_row(
        "  xrange (baseline)", f"{res['xrange_s']:.2f}",
        f"{res['xrange_entries']:,} whole entries, nothing decoded",
    )  # fmt: skip
    table.add_row("  compute", f"{res['compute_s']:.2f}", "measure + bootstrap + baseline")
    Console().print(table)
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
