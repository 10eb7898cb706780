"""Storage: Redis bytes per stored snapshot against the raw JSON, and the codec's cost.

Snapshots come from the embedded simulator (200-strike aggregate chains, the model moving tick
by tick), are stored with the daemon's own `store.write_snapshot` in a private redis-server,
and measured with `MEMORY USAGE <stream> SAMPLES 0` (every node counted) divided by the entry
count. Codec cost is timed against msgspec's JSON decode of the same body, in the same run,
as the baseline ratio.

    python -m bench.bench_storage [--snapshots 2000] [--step-s 15] [--symbols SPY,QQQ,IWM]
                                  [--quick] [--json out.json]

`--quick` (what `make bench` runs) stores 200 snapshots per symbol taken 150 s apart, for SPY and
QQQ (simulating the session is most of the time, one symbol at a time): the same
~8 hours of session as the full run, because an entry's size grows with the day's volumes and
OI changes, so fewer snapshots 15 s apart would report an early-session (smaller) ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from rich.console import Console
from rich.table import Table

from gex_alertd import keys, store
from gex_alertd.codec import decode_columns, encode_strikes
from gex_alertd.config import RedisConfig, SimulatorOptions
from gex_alertd.model import decode_flow_gex
from gex_alertd.sources.simulator.clock import ManualClock
from gex_alertd.sources.simulator.embedded import make_simulator
from tests.support.redis_server import RedisServer

QUICK_SNAPSHOTS = 200


def simulated_bodies(symbol: str, n: int, step_s: float = 15.0) -> list[bytes]:
    clock = ManualClock()
    sim = make_simulator(SimulatorOptions(cache_s=0), None, clock)
    out = []
    for _ in range(n):
        out.append(sim.body("flow", symbol, None))
        clock.advance(step_s)
    return out


def _per_call_us(fn: Any, items: list[Any], repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        for it in items:
            fn(it)
        best = min(best, (time.perf_counter() - t) / len(items))
    return best * 1e6


async def measure(symbols: list[str], n: int, step_s: float = 15.0) -> dict[str, Any]:
    results: dict[str, Any] = {"symbols": {}, "snapshots_per_symbol": n, "step_s": step_s}
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp), aof=False)
        server.start()
        redis = aioredis.Redis.from_url(server.url)
        try:
            cfg = RedisConfig(url=server.url, retention=None)
            for sym in symbols:
                bodies = simulated_bodies(sym, n, step_s)
                snaps = [decode_flow_gex(b) for b in bodies]
                for snap in snaps:
                    await store.write_snapshot(redis, snap, None, cfg)
                key = keys.snap(sym)
                entries = await redis.xlen(key)
                mem = await redis.memory_usage(key, samples=0)
                assert mem is not None  # None only for a missing key
                raw = statistics.mean(len(b) for b in bodies)
                per = mem / entries
                blocks = [encode_strikes(s.strikes) for s in snaps[:300]]
                results["symbols"][sym] = {
                    "entries": entries,
                    "strikes": statistics.mean(len(s.strikes) for s in snaps),
                    "raw_json_bytes": round(raw),
                    "redis_bytes_per_snapshot": round(per),
                    "ratio": per / raw,
                    "block_bytes": round(statistics.mean(len(b) for b in blocks)),
                    "json_decode_us": _per_call_us(decode_flow_gex, bodies[:300]),
                    "encode_us": _per_call_us(store.encode_fields, snaps[:300]),
                    "decode_us": _per_call_us(decode_columns, blocks),
                    "decode_rows_us": _per_call_us(lambda b: decode_columns(b).rows(), blocks),
                }
        finally:
            await redis.aclose()
            server.stop()
    return results


def render(results: dict[str, Any]) -> Table:
    n, step = results["snapshots_per_symbol"], results["step_s"]
    table = Table(
        title=f"Storage per snapshot ({n} per symbol, {step:g} s apart: "
        f"{n * step / 3600:.1f} h of session), {results['wall_s']:.0f} s"
    )
    for col in ("symbol", "strikes", "raw JSON B", "Redis B/snap", "ratio", "block B",
                "encode µs", "decode µs", "rows µs", "JSON decode µs (baseline)",
                "encode/JSON"):  # fmt: skip
        table.add_column(col, justify="right")
    for sym, r in results["symbols"].items():
        table.add_row(
            sym,
            f"{r['strikes']:.0f}",
            f"{r['raw_json_bytes']:,}",
            f"{r['redis_bytes_per_snapshot']:,}",
            f"{r['ratio']:.1%}",
            f"{r['block_bytes']:,}",
            f"{r['encode_us']:.0f}",
            f"{r['decode_us']:.0f}",
            f"{r['decode_rows_us']:.0f}",
            f"{r['json_decode_us']:.0f}",
            f"{r['encode_us'] / r['json_decode_us']:.2f}x",
        )
    return table


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--snapshots", type=int, default=2000)
    ap.add_argument("--symbols", default=None, help="default SPY,QQQ,IWM (SPY,QQQ with --quick)")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--step-s", type=float, default=15.0, help="simulated seconds between them")
    ap.add_argument(
        "--quick", action="store_true",
        help=f"{QUICK_SNAPSHOTS} snapshots per symbol over the same session span",
    )  # fmt: skip
    args = ap.parse_args(argv)
    n, step = args.snapshots, args.step_s
    if args.quick:
        n, step = min(n, QUICK_SNAPSHOTS), step * n / min(n, QUICK_SNAPSHOTS)
        args.symbols = args.symbols or "SPY,QQQ"
    args.symbols = args.symbols or "SPY,QQQ,IWM"
    started = time.monotonic()
    results = asyncio.run(measure(args.symbols.split(","), n, step))
    results["wall_s"] = round(time.monotonic() - started, 1)
    results["machine"] = {"python": platform.python_version(), "cpu": platform.processor()}
    Console(width=200).print(render(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
