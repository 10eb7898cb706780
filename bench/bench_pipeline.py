"""Pipeline throughput: snapshots committed to Redis with rules evaluated, per second.

Three contenders, same run, same upstream, same Redis, each on one core (CPU 1; the upstream
and redis-server share CPU 0):

- ceiling: aiohttp, `--concurrency` GETs in flight, JSON decode (msgspec, untyped), nothing
  else. No client can do the daemon's job faster than it can fetch and parse.
- gex-alertd: the daemon's own per-poll path (`pipeline.Poller`: lease, `FlowGexClient` with
  its budget and gates, typed decode and validation, `Committer`: rules + the atomic Lua commit
  of the compressed snapshot, state and alerts), one poller per symbol polling back to back,
  every symbol sharing one client (`max_concurrency` 16, the default) and one Redis client.
- daemon: the real `gex-alertd run` process (scheduler included), `interval_s` 0.02 per
  symbol; counted from the stream lengths in Redis.
- naive: what a user would write first: the official `flashalpha` SDK in a serial loop,
  `json.dumps` of the response into a Redis stream (`XADD ... MAXLEN ~`), a flip check in
  Python.

Rules (all symbols): flip_cross, net_gex_sign, threshold on spot, oi_change (basis poll). Streams
are trimmed to 2,000 entries (MAXLEN ~) for every contender, so Redis memory stays flat.

Upstream: `bench.replay_upstream` (the simulator's 200-strike bodies, a new `as_of` on every
request: caching off as far as the client can tell, at the cost of a copy; the simulator itself
computes ~150 fresh bodies/s, which would cap every contender and hide the differences).

    python -m bench.bench_pipeline [--symbols 16] [--seconds 8] [--quick] [--json PATH]
                                   [--profile out.prof]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec
from rich.console import Console
from rich.table import Table

from bench.replay_upstream import symbol_names
from tests.support.redis_server import RedisServer, free_port

KEY = "bench-key"
MAXLEN = 2000
RULES = [
    {"name": "flip", "type": "flip_cross", "symbols": "*", "direction": "any",
     "band_pct": 0.02, "cooldown": "1m", "severity": "warning", "channels": ["tty"]},
    {"name": "sign", "type": "net_gex_sign", "symbols": "*", "direction": "any",
     "cooldown": "1m", "severity": "critical", "channels": ["tty"]},
    {"name": "spot", "type": "threshold", "symbols": "*", "field": "underlying_price",
     "above": 500.5, "cooldown": "1m", "severity": "info", "channels": ["tty"]},
    {"name": "oi", "type": "oi_change", "symbols": "*", "side": "both", "basis": "poll",
     "min_contracts": 5000, "within_pct": 5, "cooldown": "1m", "severity": "info",
     "channels": ["tty"]},
]  # fmt: skip


def pin(cpu: int) -> None:
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {cpu % (os.cpu_count() or 1)})


def pinned(cpu: int) -> list[str]:
    ok = (os.cpu_count() or 1) > 1 and Path("/usr/bin/taskset").exists()
    return ["taskset", "-c", str(cpu)] if ok else []


def start_upstream(symbols: int, cpu: int = 0) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [*pinned(cpu), sys.executable, "-m", "bench.replay_upstream", "--port", str(port),
         "--symbols", str(symbols)],
        stdout=subprocess.PIPE, cwd=Path(__file__).resolve().parent.parent,
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith(b"ready"):
        proc.kill()
        raise RuntimeError(f"replay upstream did not start: {line!r}")
    return proc, f"http://127.0.0.1:{port}"


def config_tree(redis_url: str, base_url: str, symbols: list[str], interval: float) -> dict:
    return {
        "source": {"kind": "flowgex", "base_url": base_url, "api_key": KEY,
                   "requests_per_min": 10_000_000, "max_concurrency": 16, "timeout_s": 10},
        "redis": {"url": redis_url, "retention": None, "max_len": MAXLEN},
        "watch": {"interval_s": interval, "jitter_s": 0, "market_hours": "always",
                  "symbols": symbols},
        "channels": {"tty": {"type": "console"}},
        "rules": RULES,
        "ops": {"listen": None, "log_level": "warning", "log_format": "json"},
    }  # fmt: skip


async def _total_len(redis: Any, pattern: str) -> int:
    total = 0
    async for key in redis.scan_iter(match=pattern, count=1000):
        total += await redis.xlen(key)
    return total


# --- contenders ------------------------------------------------------------------------------


async def ceiling(base_url: str, symbols: list[str], seconds: float, conc: int) -> dict:
    import aiohttp

    decode = msgspec.json.Decoder().decode
    count = 0
    nbytes = 0
    conn = aiohttp.TCPConnector(limit=conc)
    async with aiohttp.ClientSession(connector=conn, headers={"X-Api-Key": KEY}) as http:

        async def worker(i: int, until: float) -> None:
            nonlocal count, nbytes
            j = i
            while time.perf_counter() < until:
                async with http.get(f"{base_url}/v1/flow/gex/{symbols[j % len(symbols)]}") as r:
                    body = await r.read()
                decode(body)
                count += 1
                nbytes += len(body)
                j += conc

        await asyncio.gather(*(worker(i, time.perf_counter() + 1.0) for i in range(conc)))
        count, nbytes = 0, 0
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(i, t0 + seconds) for i in range(conc)))
        took = time.perf_counter() - t0
    return {"per_s": count / took, "n": count, "body_bytes": nbytes / max(count, 1)}


async def pipeline(
    redis_url: str, base_url: str, symbols: list[str], seconds: float, profile: Path | None
) -> dict:
    from gex_alertd import config as config_mod
    from gex_alertd.commit import Committer
    from gex_alertd.connections import connect
    from gex_alertd.ops.logging import configure as configure_logging
    from gex_alertd.pipeline import Poller
    from gex_alertd.sources.backoff import Backoff
    from gex_alertd.sources.flowgex import FlowGexClient

    cfg = config_mod.parse(config_tree(redis_url, base_url, symbols, 0.001))
    configure_logging("json", "warning")
    redis = connect(redis_url)
    await redis.flushall()
    client = FlowGexClient.from_config(cfg.source)
    committer = Committer(redis, list(cfg.rules), cfg.redis)
    pollers = [
        Poller(t, client, committer.commit, redis, backoff=Backoff(1, 60), instance_id="bench")
        for t in cfg.watch.entries()
    ]
    outcomes: dict[str, int] = {}
    stored = 0

    async def loop(p: Poller, until: float) -> None:
        nonlocal stored
        while time.perf_counter() < until:
            out = await p.poll()
            outcomes[out] = outcomes.get(out, 0) + 1
            stored += out == "stored"

    await asyncio.gather(*(loop(p, time.perf_counter() + 1.0) for p in pollers))  # warm-up
    stored, outcomes = 0, {}
    prof = None
    if profile is not None:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    await asyncio.gather(*(loop(p, t0 + seconds) for p in pollers))
    took = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    if prof is not None:
        prof.disable()
        prof.dump_stats(str(profile))
    alerts = await redis.xlen("gex:alerts")
    await client.close()
    await redis.aclose()
    return {
        "per_s": stored / took, "n": stored, "outcomes": outcomes, "alerts_enqueued": alerts,
        "cpu_per_snapshot_ms": 1000 * cpu / max(stored, 1),
    }  # fmt: skip


async def daemon(redis_url: str, base_url: str, symbols: list[str], seconds: float) -> dict:
    import redis.asyncio as aioredis
    import yaml

    redis = aioredis.Redis.from_url(redis_url)
    await redis.flushall()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.yaml"
        path.write_text(yaml.safe_dump(config_tree(redis_url, base_url, symbols, 0.02)))
        exe = str(Path(sys.executable).with_name("gex-alertd"))
        proc = await asyncio.create_subprocess_exec(
            *pinned(1), exe, "run", "--config", str(path),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            await asyncio.sleep(2.5)  # start-up and warm-up
            n0, t0 = await _total_len(redis, "gex:*:snap"), time.perf_counter()
            await asyncio.sleep(seconds)
            n1, t1 = await _total_len(redis, "gex:*:snap"), time.perf_counter()
        finally:
            proc.terminate()
            await asyncio.wait_for(proc.wait(), 30)
    await redis.aclose()
    if n1 >= MAXLEN * len(symbols) * 0.9:
        raise RuntimeError("streams reached MAXLEN during the window; lower --seconds")
    return {"per_s": (n1 - n0) / (t1 - t0), "n": n1 - n0}


def naive(redis_url: str, base_url: str, symbols: list[str], seconds: float) -> dict:
    """The obvious script: serial SDK calls, raw JSON into a stream, a flip check in Python."""
    import redis as redis_sync
    from flashalpha import FlashAlpha

    fa = FlashAlpha(KEY, base_url=base_url)
    r = redis_sync.Redis.from_url(redis_url)
    r.flushall()
    last_side: dict[str, int] = {}
    flips = 0

    def one(sym: str) -> None:
        nonlocal flips
        data = fa.flow_gex(sym)
        r.xadd(f"naive:{sym}", {"json": json.dumps(data)}, maxlen=MAXLEN, approximate=True)
        flip, spot = data.get("live_gamma_flip"), data["underlying_price"]
        if flip is not None:
            side = 1 if spot > flip else -1
            if last_side.get(sym, side) != side:
                flips += 1
            last_side[sym] = side

    until = time.perf_counter() + 1.0
    i = 0
    while time.perf_counter() < until:
        one(symbols[i % len(symbols)])
        i += 1
    n = 0
    t0 = time.perf_counter()
    while time.perf_counter() < t0 + seconds:
        one(symbols[n % len(symbols)])
        n += 1
    took = time.perf_counter() - t0
    r.close()
    return {"per_s": n / took, "n": n, "flips": flips}


# --- main ------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    symbols = symbol_names(args.symbols)
    pin(1)
    with tempfile.TemporaryDirectory(prefix="gex-bench-pipeline-") as tmp:
        server = RedisServer(Path(tmp) / "redis", aof=False)
        server.start()
        try:
            os.sched_setaffinity(server.proc.pid, {0}) if (os.cpu_count() or 1) > 1 else None
        except (OSError, AttributeError):
            pass
        up, base_url = start_upstream(args.symbols)
        try:
            res: dict[str, Any] = {}
            res["ceiling"] = asyncio.run(ceiling(base_url, symbols, args.seconds, 16))
            res["pipeline"] = asyncio.run(
                pipeline(server.url, base_url, symbols, args.seconds, args.profile)
            )
            if not args.no_daemon:
                res["daemon"] = asyncio.run(daemon(server.url, base_url, symbols, args.seconds))
            res["naive"] = naive(server.url, base_url, symbols, args.seconds)
        finally:
            up.terminate()
            up.wait(10)
            server.stop()
    ceil, pipe, nai = (res[k]["per_s"] for k in ("ceiling", "pipeline", "naive"))
    res["ratio_vs_ceiling"] = pipe / ceil
    res["ratio_vs_naive"] = pipe / nai
    if "daemon" in res:
        res["daemon_ratio_vs_ceiling"] = res["daemon"]["per_s"] / ceil
        res["daemon_ratio_vs_naive"] = res["daemon"]["per_s"] / nai
    res["params"] = {"symbols": args.symbols, "seconds": args.seconds, "strikes": 200,
                     "concurrency": 16, "cpus": os.cpu_count()}  # fmt: skip
    return res


def report(res: dict[str, Any]) -> None:
    ceil = res["ceiling"]["per_s"]
    nai = res["naive"]["per_s"]
    p = res["params"]
    table = Table(
        title=f"pipeline throughput: {p['symbols']} symbols x 200 strikes, {p['seconds']:g} s "
        f"windows, client on 1 core"
    )
    for col in ("contender", "snapshots/s", "x ceiling", "x naive", "note"):
        table.add_column(col, justify="right" if col != "contender" and col != "note" else "left")
    rows = [
        ("fetch ceiling (aiohttp+decode)", res["ceiling"], "16 in flight, nothing stored"),
        ("gex-alertd pipeline (Poller)", res["pipeline"],
         f"{res['pipeline']['cpu_per_snapshot_ms']:.2f} ms CPU/snapshot, "
         f"{res['pipeline']['alerts_enqueued']} alerts"),
    ]  # fmt: skip
    if "daemon" in res:
        rows.append(("gex-alertd run (scheduler)", res["daemon"], "interval 0.02 s/symbol"))
    rows.append(("naive (SDK serial loop)", res["naive"], "raw JSON XADD + flip check"))
    for name, r, note in rows:
        table.add_row(
            name, f"{r['per_s']:,.0f}", f"{r['per_s'] / ceil:.2f}", f"{r['per_s'] / nai:.1f}", note
        )
    Console().print(table)
    Console().print(
        f"goals: >= 0.5x ceiling (measured {res['ratio_vs_ceiling']:.2f}), "
        f">= 6x naive (measured {res['ratio_vs_naive']:.1f})"
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--symbols", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--quick", action="store_true", help="4 s windows")
    ap.add_argument("--no-daemon", action="store_true", help="skip the `gex-alertd run` row")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--profile", type=Path, default=None, help="cProfile the Poller window")
    args = ap.parse_args(argv)
    if args.quick:
        args.seconds = min(args.seconds, 4.0)
    res = run(args)
    report(res)
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n")
    return res


if __name__ == "__main__":
    main()
