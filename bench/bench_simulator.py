"""Throughput of the embedded simulator: 200-strike Flow GEX snapshots per second, one core.

The server runs in its own process pinned to CPU 0 (`gex-alertd simulate --cache-s 0`, so the
body is recomputed every model tick: once per simulated second, as in a benchmark run);
the load generator is a raw keep-alive HTTP/1.1 client pinned to CPU 1. As a baseline measured
in the same run, a bare aiohttp app serving the same bytes from memory shows what the HTTP
stack alone costs; the ratio is the simulator's own overhead.

    .venv/bin/python bench/bench_simulator.py [--seconds 5] [--connections 16]
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
    for _ in range(200):
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise RuntimeError(f"server on {port} did not start")


async def one_conn(port: int, path: str, deadline: float, sizes: list[int]) -> int:
    r, w = await asyncio.open_connection("127.0.0.1", port)
    req = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Api-Key: {KEY}\r\n\r\n").encode()
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


async def load(port: int, path: str, seconds: float, conns: int) -> tuple[float, int]:
    await wait_up(port)
    # warm-up (chains built, first body encoded)
    await asyncio.gather(*(one_conn(port, path, time.perf_counter() + 0.5, []) for _ in range(2)))
    sizes: list[int] = []
    t0 = time.perf_counter()
    counts = await asyncio.gather(
        *(one_conn(port, path, t0 + seconds, sizes) for _ in range(conns))
    )
    return sum(counts) / (time.perf_counter() - t0), sizes[0]


def run_server(cmd: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--symbol", default="SPY")
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity") and os.cpu_count() and os.cpu_count() > 1:
        os.sched_setaffinity(0, {1})
    path = f"/v1/flow/gex/{args.symbol}"
    exe = os.path.join(os.path.dirname(sys.executable), "gex-alertd")
    port = free_port()
    sim = run_server([
        *pinned(0), exe, "simulate", "--port", str(port), "--cache-s", "0",
        "--api-key", KEY, "--symbols", args.symbol,
    ])  # fmt: skip
    try:
        rps, size = asyncio.run(load(port, path, args.seconds, args.connections))
        sample = asyncio.run(fetch(port, path))
    finally:
        sim.terminate()
        sim.wait()
    body_file = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"gexsim-body-{os.getpid()}.json")
    with open(body_file, "wb") as f:
        f.write(sample)
    port2 = free_port()
    base = run_server([*pinned(0), sys.executable, "-c", BASELINE_APP, str(port2), body_file])
    try:
        base_rps, _ = asyncio.run(load(port2, path, args.seconds, args.connections))
    finally:
        base.terminate()
        base.wait()
        os.unlink(body_file)
    import msgspec

    strikes = len(msgspec.json.decode(sample)["strikes"])
    print(
        f"simulator: {rps:,.0f} responses/s ({strikes}-strike {args.symbol} snapshot, "
        f"{size:,} bytes, {args.connections} keep-alive connections, server on 1 core)"
    )
    print(f"baseline (bare aiohttp, same bytes): {base_rps:,.0f} responses/s")
    print(f"simulator / baseline: {rps / base_rps:.2f}")


async def fetch(port: int, path: str) -> bytes:
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(
        f"GET {path} HTTP/1.1\r\nHost: x\r\nX-Api-Key: {KEY}\r\nConnection: close\r\n\r\n".encode()
    )
    data = await r.read()
    w.close()
    return data.split(b"\r\n\r\n", 1)[1]


if __name__ == "__main__":
    main()
