"""The upstream HTTP client alone: aiohttp against the daemon's own client (sources/http.py).

    python -m bench.http_clients [--symbols 200] [--rounds 6] [--seconds 2] [--concurrency 16]

Same upstream as the pipeline bench (`bench.replay_upstream`, 200-strike bodies, on CPU 0), the
clients in this process on CPU 1, `--concurrency` GETs in flight, the body read and dropped
(no decode): requests per second and this process's CPU per request, windows alternating
between the two clients, medians. Each window runs in a fresh event loop (the asyncio loop, or
uvloop with `--uvloop`), with a fresh session or client, warmed up first.

Not a `bench_*` module (run_all does not run it): the pipeline bench's two ceiling rows carry
the same comparison with the decode into `make bench`. bench/README.md (pipeline) has figures.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
from typing import Any

from bench.bench_pipeline import KEY, pin, start_upstream, stop, timed_fetches
from bench.replay_upstream import symbol_names


async def aiohttp_window(base_url: str, symbols: list[str], conc: int, seconds: float) -> Any:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=conc)
    async with aiohttp.ClientSession(
        connector=connector, headers={"X-Api-Key": KEY}, trust_env=False
    ) as http:
        urls = [f"{base_url}/v1/flow/gex/{s}" for s in symbols]

        async def fetch(j: int) -> None:
            async with http.get(urls[j % len(urls)], allow_redirects=False) as r:
                await r.read()

        return await timed_fetches(fetch, conc, seconds)


async def own_window(base_url: str, symbols: list[str], conc: int, seconds: float) -> Any:
    from gex_alertd.sources.http import HttpClient

    http = HttpClient(base_url, max_connections=conc)
    reqs = [http.request_bytes(f"/v1/flow/gex/{s}", {"X-Api-Key": KEY}) for s in symbols]

    async def fetch(j: int) -> None:
        await http.get(reqs[j % len(reqs)], timeout_s=30, max_body_bytes=1 << 24)

    try:
        return await timed_fetches(fetch, conc, seconds)
    finally:
        await http.close()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--symbols", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--seconds", type=float, default=2.0, help="per window")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--uvloop", action="store_true")
    args = ap.parse_args(argv)
    symbols = symbol_names(args.symbols)
    runner: Any = asyncio.run
    if args.uvloop:
        import uvloop

        runner = uvloop.run
    pin(1)
    up, base_url = start_upstream(args.symbols)
    windows: dict[str, list[dict[str, float]]] = {"aiohttp": [], "own client": []}
    try:
        for _ in range(args.rounds):
            for name, fn in (("aiohttp", aiohttp_window), ("own client", own_window)):
                w = runner(fn(base_url, symbols, args.concurrency, args.seconds))
                windows[name].append(w)
    finally:
        stop(up)
    print(f"{args.symbols} symbols x 200 strikes, {args.concurrency} in flight, "
          f"{args.rounds} alternating windows of {args.seconds:g} s, medians")  # fmt: skip
    for name, ws in windows.items():
        rate = statistics.median(w["n"] / w["s"] for w in ws)
        cpu_us = statistics.median(1e6 * w["cpu"] / max(w["n"], 1) for w in ws)
        cores = statistics.median(w["cpu"] / w["s"] for w in ws)
        print(f"{name:>12}: {rate:8,.0f} requests/s  {cpu_us:6.1f} us CPU/request  "
              f"{cores:.2f} cores")  # fmt: skip


if __name__ == "__main__":
    main()
