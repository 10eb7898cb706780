"""Alert latency: rule commit (XADD onto the symbol's outbox `gex:{SYM}:alerts`) to webhook
receipt, on loopback.

A real redis-server, the production Dispatcher (signed webhooks) in this process, as in the
daemon, and a producer that XADDs outbox entries at a steady rate (the same fields the rule
commit writes) and pokes the dispatcher after each, as the daemon does after a commit that
enqueued alerts, plus an aiohttp receiver that stamps each arrival: all on one loop, so the
figures include the loop's contention (the old bench ran delivery as a process of its own; the
daemon delivers its own commits' alerts in-process, which is the path measured now). The
baseline, measured in the same run, is a bare signed HTTP POST from this process to the same
receiver (what the transport alone costs); the ratio p99/baseline-p99 is the outbox's own
overhead.

    .venv/bin/python bench/bench_alert_latency.py [--rate 100] [--seconds 10] [--no-aof]
        [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import redis.asyncio as aioredis
from aiohttp import web
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gex_alertd import config as config_mod
from gex_alertd import keys
from gex_alertd.model import AlertEvent, decode_alert, outbox_fields
from gex_alertd.notify.dispatch import Dispatcher
from gex_alertd.notify.webhook import WebhookChannel, WebhookNotifier
from gex_alertd.ops.logging import configure
from tests.support.redis_server import RedisServer, free_port

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
WORKER_START_S = 60.0


def event(i: int, t0: float) -> AlertEvent:
    return AlertEvent(
        id=f"bench:{i}", rule="bench", type="flip_cross", symbol="SPY", expiry=None,
        severity="warning", as_of="2026-11-24T15:00:00.000Z", fired_at="2026-11-24T15:00:00.000Z",
        summary="SPY crossed above the gamma flip",
        details={"t0": t0, "spot": 513.1, "flip": 512.4},
    )  # fmt: skip


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


async def paced(rate: float, n: int, fn: Callable[[int], Awaitable[object]]) -> None:
    start = time.monotonic()
    for i in range(n):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        await fn(i)


async def run(rate: float, seconds: float, aof: bool) -> dict[str, object]:
    n = int(rate * seconds)
    arrivals: dict[str, float] = {}
    t0s: dict[str, float] = {}
    done = asyncio.Event()
    expected = {"n": n}

    async def handler(request: web.Request) -> web.Response:
        body = await request.read()
        now = time.monotonic()
        ev = decode_alert(body)
        arrivals.setdefault(ev.id, now)
        t0s[ev.id] = float(ev.details["t0"])
        if len(arrivals) >= expected["n"]:
            done.set()
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    url = f"http://127.0.0.1:{port}/hook"

    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp) / "redis", aof=aof)
        server.start()
        cfg = config_mod.parse({
            "redis": {"url": server.url},
            "watch": {"symbols": ["SPY"]},
            "ops": {"log_level": "warning", "listen": None},
            "channels": {"ops": {"type": "webhook", "url": url, "secret": SECRET}},
        }, "bench")  # fmt: skip
        configure(cfg.ops.log_format, cfg.ops.log_level)
        client = aioredis.Redis.from_url(server.url)
        dispatcher = Dispatcher(client, cfg, consumer="bench")
        await dispatcher.start()
        box = keys.outbox("SPY")

        async def enqueue(ev: AlertEvent) -> None:
            # what the commit does: the entry in the symbol's outbox, then a poke
            await client.xadd(box, outbox_fields(ev, ["ops"]))
            dispatcher.poke("SPY")

        try:
            # warm-up (connections, imports) outside the measurement
            expected["n"] = 20
            await paced(
                200,
                20,
                lambda i: enqueue(event(-1 - i, time.monotonic())),
            )
            await asyncio.wait_for(done.wait(), 10)
            arrivals.clear()
            t0s.clear()
            done.clear()
            expected["n"] = n

            # baseline: the same signed POST straight from here (transport only)
            notifier = WebhookNotifier("base", WebhookChannel(url=url, secret=SECRET))
            base: list[float] = []

            async def post(i: int) -> None:
                t = time.monotonic()
                await notifier.send([event(10_000_000 + i, t)])
                base.append(time.monotonic() - t)

            await paced(rate, min(n, 500), post)
            await notifier.aclose()
            arrivals.clear()
            t0s.clear()
            done.clear()
            xadd: list[float] = []
            acked: dict[str, float] = {}

            async def produce(i: int) -> None:
                t = time.monotonic()
                await enqueue(event(i, t))
                acked[f"bench:{i}"] = time.monotonic()
                xadd.append(acked[f"bench:{i}"] - t)

            wall = time.monotonic()
            await paced(rate, n, produce)
            await asyncio.wait_for(done.wait(), 30)
            wall = time.monotonic() - wall
            lat = [arrivals[k] - t0s[k] for k in arrivals]
            lat_acked = [max(0.0, arrivals[k] - acked[k]) for k in arrivals]
        finally:
            await dispatcher.stop(drain_timeout=5)
            await client.aclose()
            server.stop()
            await runner.cleanup()

    def stats(xs: list[float]) -> dict[str, float]:
        ms = [x * 1000 for x in xs]
        return {"n": len(ms), "p50_ms": round(statistics.median(ms), 3),
                "p99_ms": round(pct(ms, 99), 3), "max_ms": round(max(ms), 3)}  # fmt: skip

    return {
        "rate_per_s": rate,
        "alerts": n,
        "wall_s": round(wall, 2),
        "redis": "aof appendfsync always" if aof else "no aof",
        "commit_to_receipt": stats(lat),
        "committed_to_receipt": stats(lat_acked),
        "baseline_direct_post": stats(base),
        "xadd_round_trip": stats(xadd),
        "p99_ratio_to_baseline": round(pct(lat, 99) / pct(base, 99), 2),
        "goal_p99_under_20ms": pct(lat, 99) * 1000 < 20,
    }


def main(argv: list[str] | None = None) -> dict[str, object]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rate", type=float, default=100.0, help="alerts per second")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--no-aof", action="store_true", help="redis without AOF (no fsync)")
    ap.add_argument("--quick", action="store_true", help="3 s instead of --seconds")
    ap.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = ap.parse_args(argv)
    res = asyncio.run(run(args.rate, 3.0 if args.quick else args.seconds, not args.no_aof))
    table = Table(
        title=f"alert latency: {res['alerts']} alerts at {args.rate:g}/s, 1 signed webhook, "
        f"loopback, redis {res['redis']}"
    )
    for col in ("path", "n", "p50 ms", "p99 ms", "max ms"):
        table.add_column(col, justify="left" if col == "path" else "right")
    for key, label in (
        ("commit_to_receipt", "commit XADD sent -> webhook receipt"),
        ("committed_to_receipt", "commit XADD acked -> webhook receipt"),
        ("baseline_direct_post", "baseline: direct signed POST"),
        ("xadd_round_trip", "XADD round trip"),
    ):
        st = res[key]
        assert isinstance(st, dict)
        table.add_row(label, *(str(st[k]) for k in ("n", "p50_ms", "p99_ms", "max_ms")))
    console = Console()
    console.print(table)
    goal = "met" if res["goal_p99_under_20ms"] else "NOT met"
    console.print(f"p99 ratio to the direct-POST baseline: {res['p99_ratio_to_baseline']}x; "
                  f"goal p99 < 20 ms: {goal}")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
