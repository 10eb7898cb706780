"""The live page's figures: a full trading day served, a new snapshot on an open page, and
what 20 open pages cost the daemon.

  serve    A full day for one symbol (1,560 snapshots x 200 strikes, 6.5 h at 15 s; the
           simulator's chains) stored in a real redis-server; `/api/SPY/snapshots` from the
           ops server class the daemon runs (`OpsServer` + `web.routes.LivePage`), over
           loopback with gzip: request wall time and bytes (gzip and raw JSON). Baseline,
           same run: the bare `XRANGE` of the same entries (what any reader pays first).
  page     Debian's chromium (Playwright) opens the symbol page with that day loaded (time to
           a finished heatmap of 1,560 columns); then new snapshots are committed one by one
           and each is timed from its XADD's reply to the second animation frame after the
           page drew it (the chart and its cells are drawn synchronously by the SSE handler;
           the frame after is on screen), and to the SSE message reaching the page. Clocks:
           the same machine's wall clock.
  cpu      `gex-alertd run` (its own process, embedded simulator, 10 symbols at a 1 s interval:
           simulated time at 5x: a new snapshot per symbol about every second, ~15 times the
           usual rate of 15 s) measured from /proc (utime + stime) over equal
           windows without pages, with 20 SSE clients connected (2 per symbol), and without
           again; the added CPU is (with - mean(without)) / window, in % of one core.

    python -m bench.bench_web [--quick] [--json F] [--snapshots 1560] [--strikes 200]
                              [--commits 5] [--window 20] [--screenshot F.png]

`--quick` (what `make bench` runs): 3 requests, 3 commits, 5 s CPU windows.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import redis.asyncio as aioredis
from rich.console import Console
from rich.table import Table

from bench.bench_pipeline import proc_stat
from bench.replay_upstream import Bodies
from gex_alertd import keys, store
from gex_alertd.config import RedisConfig, WatchTarget
from gex_alertd.model import FlowGex, decode_flow_gex
from gex_alertd.ops.http import OpsServer
from gex_alertd.web.routes import LivePage
from tests.support.browser import ARGS, CHROMIUM
from tests.support.redis_server import RedisServer, free_port

SYMBOL = "SPY"
CPU_SYMBOLS = ["SPY", "QQQ", "IWM", "DIA", "XLE", "XLF", "TLT", "GLD", "AAPL", "MSFT"]
PAGES = 20
DEADLINE_S = 60.0  # any single wait; a phase that cannot finish reports what it did
# marks when the page receives and handles each snapshot (installed before the page's scripts)
PROBE = """
window.__marks = [];
const Native = window.EventSource;
window.EventSource = function (url) {
  const es = new Native(url);
  const add = es.addEventListener.bind(es);
  es.addEventListener = (name, fn) => add(name, (ev) => {
    if (name !== "snapshot") return fn(ev);
    const mark = { recv: Date.now() };
    window.__marks.push(mark);
    fn(ev); // draw(): paints the cells and sets the chart's option, synchronously
    mark.handled = Date.now();
    requestAnimationFrame(() => requestAnimationFrame(() => { mark.shown = Date.now(); }));
  });
  return es;
};
"""


def _next(bodies: Bodies) -> FlowGex:
    """The next snapshot of the day: as_of 15 s after the previous one from the open (the
    simulated market moves 15 s per chain too)."""
    n = bodies.count.get(("", SYMBOL), 0)
    body = bodies.next(SYMBOL)
    assert body is not None
    snap = decode_flow_gex(body, symbol=SYMBOL)
    return msgspec.structs.replace(snap, as_of=bodies.start + timedelta(seconds=15 * n))


async def _fill(redis: aioredis.Redis, bodies: Bodies, snapshots: int) -> int:
    written = 0
    for _ in range(snapshots):
        snap = _next(bodies)
        written += await store.write_snapshot(redis, snap, None, RedisConfig(retention=None))
    return written


@contextlib.asynccontextmanager
async def _page_server(redis: aioredis.Redis) -> AsyncIterator[str]:
    live = LivePage(redis, lambda: [WatchTarget(SYMBOL, None, 15.0, 0.0)])

    async def health() -> dict[str, Any]:
        return {"ok": True}

    server = OpsServer("127.0.0.1:0", health, mounts=(live.mount,))
    await server.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        await server.stop()


async def serve_phase(redis: aioredis.Redis, base: str, rounds: int) -> dict[str, Any]:
    path = f"{base}/api/{SYMBOL}/snapshots?window_pct=100"
    walls, raw_walls = [], []
    gz_bytes = raw_bytes = columns = strikes = 0
    async with aiohttp.ClientSession(auto_decompress=False) as http:
        for _ in range(rounds):
            t0 = time.perf_counter()
            async with http.get(path, headers={"Accept-Encoding": "gzip"}) as resp:
                body = await resp.read()
                assert resp.status == 200 and resp.headers["Content-Encoding"] == "gzip"
            walls.append(time.perf_counter() - t0)
            gz_bytes = len(body)
            t0 = time.perf_counter()
            await redis.xrange(keys.snap(SYMBOL), count=100_000)
            raw_walls.append(time.perf_counter() - t0)
        frame = json.loads(gzip.decompress(body))
        raw_bytes = len(gzip.decompress(body))
        columns, strikes = len(frame["t"]), len(frame["strikes"])
    serve_s = statistics.median(walls)
    xrange_s = statistics.median(raw_walls)
    return {
        "requests": rounds,
        "columns": columns,
        "strikes": strikes,
        "serve_ms_median": round(serve_s * 1000, 1),
        "serve_ms_max": round(max(walls) * 1000, 1),
        "xrange_ms_median": round(xrange_s * 1000, 1),
        "ratio_to_xrange": round(serve_s / xrange_s, 2),
        "gzip_bytes": gz_bytes,
        "json_bytes": raw_bytes,
    }


async def page_phase(
    redis: aioredis.Redis,
    base: str,
    bodies: Bodies,
    commits: int,
    tmp: Path,
    screenshot: Path | None = None,
) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    if not os.access(CHROMIUM, os.X_OK):
        raise SystemExit(f"{CHROMIUM} missing: apt-get install -y chromium (make system-deps)")
    latencies, sse = [], []
    async with async_playwright() as pw:
        ctx = await pw.chromium.launch_persistent_context(
            str(tmp / "profile"), executable_path=CHROMIUM, headless=True, args=ARGS,
            viewport={"width": 1400, "height": 1000},
        )  # fmt: skip
        try:
            tab = await ctx.new_page()
            await tab.add_init_script(PROBE)
            t0 = time.perf_counter()
            await tab.goto(f"{base}/view?symbol={SYMBOL}&window_pct=100")
            await tab.wait_for_function(
                "window.gexPage && window.gexPage.grid.columns > 0", timeout=DEADLINE_S * 1000
            )
            await tab.evaluate(  # the frame after the one that painted the day
                "new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))"
            )
            load_s = time.perf_counter() - t0
            n0 = await tab.evaluate("window.gexPage.state.times.length")
            for i in range(commits):
                snap = _next(bodies)
                await store.write_snapshot(redis, snap, None, RedisConfig(retention=None))
                committed = time.time() * 1000
                await tab.wait_for_function(
                    f"window.__marks.length > {i} && window.__marks[{i}].shown",
                    timeout=DEADLINE_S * 1000,
                )
                mark = await tab.evaluate(f"window.__marks[{i}]")
                latencies.append(mark["shown"] - committed)
                sse.append(mark["recv"] - committed)
            n1 = await tab.evaluate("window.gexPage.state.times.length")
            assert n1 == n0 + commits, (n0, n1)
            if screenshot is not None:
                await tab.screenshot(path=str(screenshot), full_page=True)
        finally:
            await ctx.close()
    return {
        "page_load_s": round(load_s, 2),
        "columns_at_load": n0,
        "commits": commits,
        "commit_to_chart_ms_median": round(statistics.median(latencies)),
        "commit_to_chart_ms_max": round(max(latencies)),
        "commit_to_sse_ms_median": round(statistics.median(sse)),
    }


def _cpu_ticks(pid: int) -> int:
    fields = proc_stat(pid)
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)


async def _sse_client(url: str, counts: list[int], i: int) -> None:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        async for line in resp.content:
            if line.startswith(b"event: "):
                counts[i] += 1


async def cpu_phase(tmp: Path, window_s: float) -> dict[str, Any]:
    redis_srv = RedisServer(tmp / "redis-cpu")
    redis_srv.start()
    port = free_port()
    cfg = tmp / "daemon.yaml"
    cfg.write_text(
        "source: {kind: simulator, requests_per_min: 100000,\n"
        "         simulator: {cache_s: 0, speed: 5}}\n"
        f'redis: {{url: "{redis_srv.url}", retention: 1d}}\n'
        f"watch: {{interval_s: 1, jitter_s: 0, market_hours: always, "
        f"symbols: [{', '.join(CPU_SYMBOLS)}]}}\n"
        f'ops: {{listen: "127.0.0.1:{port}", log_format: json, log_level: warning}}\n'
    )
    log = (tmp / "daemon.log").open("wb")
    daemon = subprocess.Popen(  # noqa: ASYNC220  # started once, before anything is timed
        [sys.executable, "-m", "gex_alertd", "run", "--config", str(cfg), "--no-uvloop"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    r = aioredis.Redis.from_url(redis_srv.url)
    hz = os.sysconf("SC_CLK_TCK")
    try:
        deadline = time.monotonic() + DEADLINE_S
        while True:  # every symbol stored at least twice: polling has settled
            lens = [await r.xlen(keys.snap(s)) for s in CPU_SYMBOLS]
            if min(lens) >= 2:
                break
            if time.monotonic() > deadline or daemon.poll() is not None:
                raise SystemExit(f"daemon did not store snapshots (lens {lens})")
            await asyncio.sleep(0.2)

        async def window() -> tuple[float, int]:
            c0, t0 = _cpu_ticks(daemon.pid), time.monotonic()
            n0 = sum([await r.xlen(keys.snap(s)) for s in CPU_SYMBOLS])
            await asyncio.sleep(window_s)
            c1, t1 = _cpu_ticks(daemon.pid), time.monotonic()
            n1 = sum([await r.xlen(keys.snap(s)) for s in CPU_SYMBOLS])
            return (c1 - c0) / hz / (t1 - t0), n1 - n0

        before, _ = await window()
        counts = [0] * PAGES
        urls = [
            f"http://127.0.0.1:{port}/api/live?symbol={CPU_SYMBOLS[i % len(CPU_SYMBOLS)]}"
            for i in range(PAGES)
        ]
        clients = [asyncio.create_task(_sse_client(u, counts, i)) for i, u in enumerate(urls)]
        await asyncio.sleep(2.0)  # connected and subscribed
        got0 = sum(counts)
        with_pages, stored_with = await window()
        events = sum(counts) - got0
        for c in clients:
            c.cancel()
        await asyncio.gather(*clients, return_exceptions=True)
        await asyncio.sleep(1.0)
        after, _ = await window()
    finally:
        daemon.terminate()
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.kill()
        await r.aclose()
        redis_srv.stop()
        log.close()
    base = (before + after) / 2
    return {
        "window_s": window_s,
        "symbols": len(CPU_SYMBOLS),
        "pages": PAGES,
        "snapshots_per_window": stored_with,
        "sse_events_received": events,
        "daemon_cores_without_pages": round(base, 4),
        "daemon_cores_with_pages": round(with_pages, 4),
        "added_pct_of_a_core": round(100 * (with_pages - base), 2),
        "ratio_with_to_without": round(with_pages / base, 3) if base else None,
        "without_windows": [round(before, 4), round(after, 4)],
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-web-") as tmp_name:
        tmp = Path(tmp_name)
        server = RedisServer(tmp / "redis")
        server.start()
        redis = aioredis.Redis.from_url(server.url)
        try:
            t0 = time.perf_counter()
            # one simulator tick per snapshot (15 s apart): every snapshot's values its own,
            # so the compressed size is that of a real day, not of a few repeated chains
            bodies = Bodies([SYMBOL], ticks=args.snapshots, strikes=args.strikes, share=1)
            out["stored"] = await _fill(redis, bodies, args.snapshots)
            out["fill_s"] = round(time.perf_counter() - t0, 1)
            async with _page_server(redis) as base:
                out["serve"] = await serve_phase(redis, base, args.requests)
                out["page"] = await page_phase(
                    redis, base, bodies, args.commits, tmp, args.screenshot
                )
        finally:
            await redis.aclose()
            server.stop()
        out["cpu"] = await cpu_phase(tmp, args.window)
    return out


def report(res: dict[str, Any]) -> None:
    s, p, c = res["serve"], res["page"], res["cpu"]
    t = Table(title=f"live page: a day of {s['columns']} snapshots x {s['strikes']} strikes")
    t.add_column("figure")
    t.add_column("value", justify="right")
    t.add_column("baseline (same run)", justify="right")
    t.add_row(
        "/snapshots, request wall (median)", f"{s['serve_ms_median']} ms",
        f"XRANGE alone {s['xrange_ms_median']} ms ({s['ratio_to_xrange']}x)",
    )  # fmt: skip
    t.add_row("/snapshots, bytes sent (gzip)", f"{s['gzip_bytes']:,}", f"JSON {s['json_bytes']:,}")
    t.add_row("page open to finished heatmap", f"{p['page_load_s']} s", "")
    t.add_row(
        "commit -> chart rendered (median / max)",
        f"{p['commit_to_chart_ms_median']} / {p['commit_to_chart_ms_max']} ms",
        f"commit -> SSE at page {p['commit_to_sse_ms_median']} ms",
    )  # fmt: skip
    t.add_row(
        f"{c['pages']} SSE pages: added daemon CPU", f"{c['added_pct_of_a_core']}% of a core",
        f"without pages {100 * c['daemon_cores_without_pages']:.1f}% "
        f"(ratio {c['ratio_with_to_without']})",
    )  # fmt: skip
    t.add_row(
        "  events delivered in the window", f"{c['sse_events_received']:,}",
        f"{c['snapshots_per_window']} snapshots stored",
    )  # fmt: skip
    Console(width=120).print(t)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--snapshots", type=int, default=1560)
    ap.add_argument("--strikes", type=int, default=200)
    ap.add_argument("--requests", type=int, default=7)
    ap.add_argument("--commits", type=int, default=5)
    ap.add_argument("--window", type=float, default=20.0, help="CPU window (s)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--screenshot", type=Path, default=None, help="save the page (PNG)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.quick:
        args.requests, args.commits, args.window = 3, 3, 5.0
    res = asyncio.run(run(args))
    report(res)
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
