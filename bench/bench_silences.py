"""Silences: what the delivery check (`SilenceStore.check_many`, once per send) costs with 0 to
MAX_SILENCES silences stored, served from the cache (the version did not move) and right after
a write (a full re-read and decode). The baseline is a bare `PING` round trip to the same
private redis-server in the same run: the check is one round trip plus the matching.

    python -m bench.bench_silences [--checks 200] [--quick] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from rich.console import Console
from rich.table import Table

from gex_alertd import keys
from gex_alertd.model import AlertEvent
from gex_alertd.notify import silences as sil
from tests.support.redis_server import RedisServer

SIZES = (0, 10, 100, sil.MAX_SILENCES)
EVENT = AlertEvent(
    id="a", rule="no-silence-matches", type="flip_cross", symbol="SPY", expiry=None,
    severity="warning", as_of="t", fired_at="t", summary="s",
)  # fmt: skip


async def _fill(redis: aioredis.Redis, store: sil.SilenceStore, n: int) -> None:
    await redis.delete(sil.KEY)
    now = await store.server_now()
    async with redis.pipeline(transaction=False) as pipe:
        for i in range(n):
            s = sil.Silence(
                id=str(uuid.uuid4()),
                matchers=sil.Matchers(rule=f"rule-{i}", symbol="SPY"),
                starts_at=now,
                ends_at=now + timedelta(days=1),
            )
            pipe.hset(sil.KEY, s.id, sil.encode(s))
        pipe.incr(keys.SILENCES_VERSION)  # as every write through the store does
        await pipe.execute()


async def _per_call_ms(fn: Any, n: int) -> float:
    t = time.perf_counter()
    for _ in range(n):
        await fn()
    return (time.perf_counter() - t) / n * 1000


async def measure(checks: int) -> dict[str, Any]:
    out: dict[str, Any] = {"checks": checks, "sizes": {}}
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp), aof=False)
        server.start()
        redis = aioredis.Redis.from_url(server.url)
        try:
            await redis.ping()  # the connection is made outside the timing
            out["ping_ms"] = await _per_call_ms(redis.ping, checks)
            for n in SIZES:
                store = sil.SilenceStore(redis)
                await _fill(redis, store, n)

                async def after_write(store: sil.SilenceStore = store) -> None:
                    await redis.incr(keys.SILENCES_VERSION)
                    await store.check_many([EVENT], "ops")

                async def cached(store: sil.SilenceStore = store) -> None:
                    await store.check_many([EVENT], "ops")

                full = await _per_call_ms(after_write, max(5, checks // 10))
                await cached()
                hit = await _per_call_ms(cached, checks)
                out["sizes"][str(n)] = {"cached_ms": hit, "after_write_ms": full}
        finally:
            await redis.aclose()
            server.stop()
    return out


def render(results: dict[str, Any]) -> Table:
    ping = results["ping_ms"]
    t = Table(title=f"silence check per send (baseline: PING {ping:.3f} ms in this run)")
    for col in ("silences", "cached ms", "x PING", "after a write ms", "x PING"):
        t.add_column(col, justify="right")
    for n, r in results["sizes"].items():
        t.add_row(
            n,
            f"{r['cached_ms']:.3f}",
            f"{r['cached_ms'] / ping:.1f}",
            f"{r['after_write_ms']:.3f}",
            f"{r['after_write_ms'] / ping:.1f}",
        )
    return t


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--checks", type=int, default=200)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--quick", action="store_true", help="50 checks per size")
    args = ap.parse_args(argv)
    checks = min(args.checks, 50) if args.quick else args.checks
    started = time.monotonic()
    results = asyncio.run(measure(checks))
    results["wall_s"] = round(time.monotonic() - started, 1)
    results["machine"] = {"python": platform.python_version(), "cpu": platform.processor()}
    Console(width=200).print(render(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
