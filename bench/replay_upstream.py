"""A Flow GEX upstream for throughput benchmarks: the simulator's bodies, new data every request.

The embedded simulator computes a 200-strike aggregated body in 5-10 ms of pure Python (see
bench_simulator), so with caching off it alone would cap every contender at ~150 bodies/s on
one core and hide the differences between them. This server computes a few consecutive ticks
per symbol with the same simulator model once at start, then serves them round-robin with the
`as_of` advanced by one second per request and symbol: every response is a valid, new snapshot
(caching off, as far as any client can tell), and serving it costs a copy. The count is kept per
API key too: clients with keys of their own each see their symbols advance by their own requests
alone (several daemons of one bench, each on a Redis of its own, do not speed up each other's
as_of, hence their cooldowns and alert rates); clients sharing a key share the count.

    python -m bench.replay_upstream --port P --symbols 16 [--ticks 4] [--strikes 200]
                                    [--latency-ms 0]

Prints `ready <port>` on stdout once it listens. Symbols are named S0000, S0001, ...
`GET /stats` answers the number of 200s served (JSON), for the scale bench.
"""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, datetime, timedelta

import msgspec
from aiohttp import web

from gex_alertd.config import SimulatorOptions
from gex_alertd.sources.simulator.clock import ManualClock
from gex_alertd.sources.simulator.embedded import make_simulator
from gex_alertd.sources.simulator.scenario import Scenario, SymbolParams

# The served as_of starts two days back (a daemon refuses one older than redis.retention, 7 d by
# default, or ahead of its clock): one second per request and symbol stays behind the wall
# clock for 172,800 requests per symbol, far beyond any bench run.
START_BACK = timedelta(days=2)


def rebased_start() -> datetime:
    return datetime.now(UTC).replace(second=0, microsecond=0) - START_BACK


def symbol_names(n: int) -> list[str]:
    return [f"S{i:04d}" for i in range(n)]


def iso(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


class Bodies:
    """Per symbol: a few consecutive simulator bodies, with the as_of spliced in per request."""

    def __init__(self, symbols: list[str], ticks: int, strikes: int, share: int) -> None:
        self.parts: dict[str, list[tuple[bytes, bytes]]] = {}
        self.count: dict[tuple[str, str], int] = {}  # (API key, symbol) -> requests served
        self.served = 0
        self.start = rebased_start()
        params = {s: SymbolParams(spot=500.0, strikes=strikes) for s in symbols[:share]}
        clock = ManualClock(self.start)
        sim = make_simulator(SimulatorOptions(cache_s=0), Scenario(symbols=params), clock)
        # `share` distinct chains; further symbols reuse them under their own name (building
        # 5,000 chains would take minutes and change nothing in what a client sees)
        base: list[list[bytes]] = [[] for _ in range(min(share, len(symbols)))]
        for _ in range(ticks):
            for i, sym in enumerate(symbols[:share]):
                base[i].append(sim.body("flow", sym, None))
            clock.advance(15)
        for i, sym in enumerate(symbols):
            src = symbols[i % share]
            out = []
            for body in base[i % share]:
                as_of = msgspec.json.decode(body)["as_of"]
                text = body.replace(f'"symbol":"{src}"'.encode(), f'"symbol":"{sym}"'.encode())
                head, tail = text.split(f'"as_of":"{as_of}"'.encode(), 1)
                out.append((head + b'"as_of":"', b'"' + tail))
            self.parts[sym] = out

    def next(self, symbol: str, key: str = "") -> bytes | None:
        parts = self.parts.get(symbol)
        if parts is None:
            return None
        n = self.count.get((key, symbol), 0)
        self.count[key, symbol] = n + 1
        head, tail = parts[n % len(parts)]
        self.served += 1
        return head + iso(self.start + timedelta(seconds=n)).encode() + tail


def build_app(bodies: Bodies, latency_s: float = 0.0) -> web.Application:
    async def flow(request: web.Request) -> web.Response:
        if latency_s:
            await asyncio.sleep(latency_s)  # a provider across the internet, not on loopback
        body = bodies.next(request.match_info["symbol"], request.headers.get("X-Api-Key", ""))
        if body is None:
            return web.json_response({"message": "unknown symbol"}, status=404)
        return web.Response(body=body, content_type="application/json")

    async def stats(request: web.Request) -> web.Response:
        return web.json_response({"served": bodies.served})

    app = web.Application()
    app.router.add_get("/v1/flow/gex/{symbol}", flow)
    app.router.add_get("/stats", stats)
    return app


async def serve(port: int, bodies: Bodies, latency_s: float = 0.0) -> None:
    runner = web.AppRunner(build_app(bodies, latency_s), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=4096).start()
    print(f"ready {port}", flush=True)
    await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--symbols", type=int, default=16)
    ap.add_argument("--ticks", type=int, default=4)
    ap.add_argument("--strikes", type=int, default=200)
    ap.add_argument("--share", type=int, default=32, help="distinct chains computed")
    ap.add_argument("--latency-ms", type=float, default=0.0, help="added before each response")
    args = ap.parse_args(argv)
    bodies = Bodies(symbol_names(args.symbols), args.ticks, args.strikes, args.share)
    try:
        asyncio.run(serve(args.port, bodies, args.latency_ms / 1000))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
