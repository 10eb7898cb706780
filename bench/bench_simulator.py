"""Throughput of the embedded simulator: 200-strike Flow GEX snapshots per second, one core.

The server runs in its own process pinned to CPU 0 (`gex-alertd simulate --cache-s 0`, so the
body is recomputed every model tick: once per simulated second, as in a benchmark run);
the load generator is a raw keep-alive HTTP/1.1 client pinned to CPU 1. As a baseline measured
in the same run, a bare aiohttp app serving the same bytes from memory shows what the HTTP
stack alone costs; the ratio is the simulator's own overhead.

    .venv/bin/python bench/bench_simulator.py [--seconds 5] [--rounds 2] [--connections 16]
        [--quick] [--json PATH]

`--quick` (what `make bench` runs): 2 rounds of 2 s per server. Every wait on a server (start,
each connection, stop) has a deadline, and the figures list each window's responses and length.

Also measured: the time to compute one aggregated snapshot without the cache (what a model
tick costs), next to the time to encode the same body with msgspec (a baseline of the same run).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time

KEY = "bench-key"
# every wait on a server is bounded, so a stalled or slow-starting server fails the bench with a
# message instead of hanging it until run_all's limit kills it without one
START_TIMEOUT_S = 60.0
IO_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
BASELINE_APP = """
import sys
from aiohttp import web
body = open(sys.argv[2], "rb").read()
async def h(request):
    return web.Response(body=body, content_type="application/json")
app = web.Application()
app.router.add_get("/v1/flow/gex/{symbol}", h)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pinned(cpu: int) -> list[str]:
    return ["taskset", "-c", str(cpu)] if os.path.exists("/usr/bin/taskset") else []


async def wait_up(port: int) -> None:
    # a time limit, not a number of attempts: on a busy machine the server's start-up (imports,
    # chains) takes several times longer than on a quiet one
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise RuntimeError(f"server on {port} did not start within {START_TIMEOUT_S:g} s")


async def one_conn(port: int, path: str, deadline: float, sizes: list[int]) -> int:
    # one timer for the whole connection (not one per read: that would slow the load generator,
    # which shares its core with nothing but must not become the bottleneck)
    async with asyncio.timeout(deadline - time.perf_counter() + IO_TIMEOUT_S):
        r, w = await asyncio.open_connection("127.0.0.1", port)
        req = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Api-Key: {KEY}\r\n\r\n".encode()
        n = 0
        while time.perf_counter() < deadline:
            w.write(req)
            head = await r.readuntil(b"\r\n\r\n")
            status = head[9:12]
            if status != b"200":
                raise RuntimeError(f"unexpected status {status!r}")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            body = await r.readexactly(length)
            if not sizes:
                sizes.append(len(body))
            n += 1
        w.close()
    return n


async def load(port: int, path: str, seconds: float, conns: int) -> tuple[int, float, int]:
    """(responses, seconds they took, body bytes) over one window of `seconds`."""
    await wait_up(port)
    # warm-up (chains built, first body encoded)
    await asyncio.gather(*(one_conn(port, path, time.perf_counter() + 0.5, []) for _ in range(2)))
    sizes: list[int] = []
    t0 = time.perf_counter()
    counts = await asyncio.gather(
        *(one_conn(port, path, t0 + seconds, sizes) for _ in range(conns))
    )
    return sum(counts), time.perf_counter() - t0, sizes[0]


def run_server(cmd: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(STOP_TIMEOUT_S)


def compute_cost(symbol: str, n: int = 20) -> tuple[float, float]:
    """(ms to compute + encode one snapshot uncached, ms to only encode it)."""
    import msgspec

    from gex_alertd.config import SimulatorOptions
    from gex_alertd.sources.simulator.clock import ManualClock
    from gex_alertd.sources.simulator.embedded import make_simulator

    clock = ManualClock()
    sim = make_simulator(SimulatorOptions(cache_s=0), None, clock)
    sim.body("flow", symbol, None)
    t0 = time.perf_counter()
    for _ in range(n):
        clock.advance(1)
        sim.body("flow", symbol, None)
    compute = (time.perf_counter() - t0) / n * 1000
    rows = sim.markets[symbol].rows(None, True)
    enc = msgspec.json.Encoder()
    t0 = time.perf_counter()
    for _ in range(n):
        enc.encode(rows)
    return compute, (time.perf_counter() - t0) / n * 1000


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--symbol", default="SPY")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds (best of)")
    ap.add_argument("--quick", action="store_true", help="2 rounds of 2 s per server")
    ap.add_argument("--json", default=None, help="write the figures as one JSON object")
    args = ap.parse_args(argv)
    if args.quick:
        # still 2 interleaved rounds (best of each): with one, a burst of load from elsewhere
        # during either window decides the ratio
        args.seconds, args.rounds = min(args.seconds, 2.0), min(args.rounds, 2)
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})
    path = f"/v1/flow/gex/{args.symbol}"
    exe = os.path.join(os.path.dirname(sys.executable), "gex-alertd")
    body_file = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"gexsim-body-{os.getpid()}.json")
    # Interleaved rounds, best of each: a shared box's background load hits both sides alike.
    rps = base_rps = 0.0
    size = 0
    windows: list[dict[str, str | float]] = []  # what was actually measured, for the figures
    started = time.monotonic()
    try:
        for _ in range(args.rounds):
            port = free_port()
            sim = run_server([
                *pinned(0), exe, "simulate", "--port", str(port), "--cache-s", "0",
                "--api-key", KEY, "--symbols", args.symbol,
            ])  # fmt: skip
            try:
                n, secs, size = asyncio.run(load(port, path, args.seconds, args.connections))
                rps = max(rps, n / secs)
                windows.append({"server": "simulator", "responses": n, "s": round(secs, 2)})
                sample = asyncio.run(fetch(port, path))
            finally:
                stop(sim)
            with open(body_file, "wb") as f:
                f.write(sample)
            port2 = free_port()
            base = run_server(
                [*pinned(0), sys.executable, "-c", BASELINE_APP, str(port2), body_file]
            )
            try:
                n, secs, _ = asyncio.run(load(port2, path, args.seconds, args.connections))
                base_rps = max(base_rps, n / secs)
                windows.append({"server": "baseline", "responses": n, "s": round(secs, 2)})
            finally:
                stop(base)
    finally:
        if os.path.exists(body_file):
            os.unlink(body_file)
    import msgspec
    from rich.console import Console
    from rich.table import Table

    strikes = len(msgspec.json.decode(sample)["strikes"])
    compute_ms, encode_ms = compute_cost(args.symbol)
    figures = {
        "responses_per_s": round(rps, 1),
        "baseline_responses_per_s": round(base_rps, 1),
        "ratio": round(rps / base_rps, 3),
        "strikes": strikes,
        "body_bytes": size,
        "connections": args.connections,
        "rounds": args.rounds,
        "snapshot_compute_ms": round(compute_ms, 3),
        "encode_only_ms": round(encode_ms, 3),
        "windows": windows,
        "wall_s": round(time.monotonic() - started, 1),
    }
    table = Table(title=f"Simulator: {strikes}-strike {args.symbol} snapshots, server on 1 core")
    for col in ("measure", "value", "baseline (same run)", "ratio"):
        table.add_column(col)
    table.add_row(
        "responses/s (keep-alive, cache_s 0)", f"{rps:,.0f}",
        f"{base_rps:,.0f} (bare aiohttp, same bytes)", f"{rps / base_rps:.2f}",
    )  # fmt: skip
    table.add_row(
        "one snapshot computed per tick (ms)", f"{compute_ms:.2f}",
        f"{encode_ms:.2f} (msgspec encode only)", f"{compute_ms / encode_ms:.1f}",
    )  # fmt: skip
    table.add_row("body size (bytes)", f"{size:,}", "", "")
    Console().print(table)
    Console().print(
        "measured: "
        + ", ".join(f"{w['server']} {w['responses']:,} in {w['s']:.1f} s" for w in windows)
        + f"; wall {figures['wall_s']:.0f} s",
        highlight=False,
    )
    if args.json:
        import json

        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)


async def fetch(port: int, path: str) -> bytes:
    async with asyncio.timeout(IO_TIMEOUT_S):
        r, w = await asyncio.open_connection("127.0.0.1", port)
        head = f"GET {path} HTTP/1.1\r\nHost: x\r\nX-Api-Key: {KEY}\r\nConnection: close\r\n"
        w.write(head.encode() + b"\r\n")
        data = await r.read()
        w.close()
    return data.split(b"\r\n\r\n", 1)[1]


if __name__ == "__main__":
    main()
