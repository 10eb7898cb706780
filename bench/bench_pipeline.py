"""Pipeline throughput: snapshots committed to Redis with rules evaluated, per second.

Three contenders, same run, same upstream, same Redis, each on one core (CPU 1; the upstream
and redis-server share CPU 0):

- ceiling: aiohttp, `--concurrency` GETs in flight, JSON decode (msgspec, untyped), nothing
  else. No client can do the daemon's job faster than it can fetch and parse.
- gex-alertd: the daemon's own per-poll path (`pipeline.Poller`: `FlowGexClient` with
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

    python -m bench.bench_pipeline [--symbols 32] [--seconds 12] [--rounds 4] [--quick]
                                   [--json PATH] [--profile out.prof]

`--quick` (what `make bench` runs): 6 s per contender in 3 interleaved windows of 2 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import select
import signal
import statistics
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
UPSTREAM_START_S = 60
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


def start_upstream(
    symbols: int, cpu: int = 0, latency_ms: float = 0.0
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [*pinned(cpu), sys.executable, "-m", "bench.replay_upstream", "--port", str(port),
         "--symbols", str(symbols), "--latency-ms", str(latency_ms)],
        stdout=subprocess.PIPE, cwd=Path(__file__).resolve().parent.parent,
    )  # fmt: skip
    assert proc.stdout is not None
    # bounded: it builds its bodies before listening, which a busy machine slows down; a hang
    # here would otherwise last until run_all kills the whole bench without a word
    ready, _, _ = select.select([proc.stdout], [], [], UPSTREAM_START_S)
    line = proc.stdout.readline() if ready else b"(nothing within %d s)" % UPSTREAM_START_S
    if not line.startswith(b"ready"):
        stop(proc)
        raise RuntimeError(f"replay upstream did not start: {line!r}")
    return proc, f"http://127.0.0.1:{port}"


def stop(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """terminate, then kill if it has not exited within timeout."""
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)


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


# --- contenders ------------------------------------------------------------------------------
# Each measures one window and returns {"n": snapshots, "s": wall seconds, "cpu": CPU seconds of
# the contender's own process}. The machine may be shared (load from other work), so windows
# are interleaved round-robin and the figures are medians; CPU per snapshot is reported too,
# because it barely depends on the load.


async def _warm(fn: Any) -> None:
    until = time.perf_counter() + 0.5
    while time.perf_counter() < until:
        await fn()


class Ceiling:
    def __init__(self, base_url: str, symbols: list[str], conc: int = 16) -> None:
        self.base_url, self.symbols, self.conc = base_url, symbols, conc
        self.decode = msgspec.json.Decoder().decode

    async def window(self, seconds: float) -> dict[str, float]:
        import aiohttp

        count = 0
        conn = aiohttp.TCPConnector(limit=self.conc)
        async with aiohttp.ClientSession(connector=conn, headers={"X-Api-Key": KEY}) as http:

            async def worker(i: int, until: float) -> None:
                nonlocal count
                j = i
                while time.perf_counter() < until:
                    sym = self.symbols[j % len(self.symbols)]
                    async with http.get(f"{self.base_url}/v1/flow/gex/{sym}") as r:
                        body = await r.read()
                    self.decode(body)
                    count += 1
                    j += self.conc

            await asyncio.gather(*(worker(i, time.perf_counter() + 0.3) for i in range(self.conc)))
            count = 0
            cpu0, t0 = time.process_time(), time.perf_counter()
            await asyncio.gather(*(worker(i, t0 + seconds) for i in range(self.conc)))
            return {"n": count, "s": time.perf_counter() - t0, "cpu": time.process_time() - cpu0}


class Pipeline:
    """The daemon's per-poll code path in this process: one Poller per symbol, back to back."""

    def __init__(self, redis_url: str, base_url: str, symbols: list[str]) -> None:
        self.args = (redis_url, base_url, symbols)
        self.outcomes: dict[str, int] = {}
        self.profile: Any = None

    async def window(self, seconds: float) -> dict[str, float]:
        from gex_alertd import config as config_mod
        from gex_alertd.commit import Committer
        from gex_alertd.connections import connect
        from gex_alertd.ops.logging import configure as configure_logging
        from gex_alertd.pipeline import Poller
        from gex_alertd.sources.backoff import Backoff
        from gex_alertd.sources.flowgex import FlowGexClient

        redis_url, base_url, symbols = self.args
        cfg = config_mod.parse(config_tree(redis_url, base_url, symbols, 0.001))
        configure_logging("json", "warning")
        redis = connect(redis_url)
        client = FlowGexClient.from_config(cfg.source)
        committer = Committer(redis, list(cfg.rules), cfg.redis)
        pollers = [
            Poller(t, client, committer.commit, backoff=Backoff(1, 60)) for t in cfg.watch.entries()
        ]
        stored = 0

        async def loop(p: Poller, until: float) -> None:
            nonlocal stored
            while time.perf_counter() < until:
                out = await p.poll()
                self.outcomes[out] = self.outcomes.get(out, 0) + 1
                stored += out == "stored"

        await asyncio.gather(*(loop(p, time.perf_counter() + 0.3) for p in pollers))
        stored = 0
        if self.profile is not None:
            self.profile.enable()
        cpu0, t0 = time.process_time(), time.perf_counter()
        await asyncio.gather(*(loop(p, t0 + seconds) for p in pollers))
        took, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        if self.profile is not None:
            self.profile.disable()
        await client.close()
        await redis.aclose()
        return {"n": stored, "s": took, "cpu": cpu}


def _proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Daemon:
    """The real `gex-alertd run`, stopped (SIGSTOP) between its windows."""

    def __init__(self, redis_url: str, base_url: str, symbols: list[str], tmp: Path) -> None:
        import yaml

        self.redis_url = redis_url
        path = tmp / "config.yaml"
        path.write_text(yaml.safe_dump(config_tree(redis_url, base_url, symbols, 0.02)))
        exe = str(Path(sys.executable).with_name("gex-alertd"))
        self.proc = subprocess.Popen(
            [*pinned(1), exe, "run", "--config", str(path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.started = False

    async def window(self, seconds: float) -> dict[str, float]:
        import redis.asyncio as aioredis

        redis = aioredis.Redis.from_url(self.redis_url)
        self.proc.send_signal(signal.SIGCONT)
        await asyncio.sleep(0.5 if self.started else 3.0)  # start-up, or the scheduler catching up
        self.started = True
        n0, c0, t0 = await _total_len(redis), _proc_cpu(self.proc.pid), time.perf_counter()
        await asyncio.sleep(seconds)
        n1, c1, t1 = await _total_len(redis), _proc_cpu(self.proc.pid), time.perf_counter()
        self.proc.send_signal(signal.SIGSTOP)
        await redis.aclose()
        if self.proc.poll() is not None:
            raise RuntimeError(f"gex-alertd run exited with {self.proc.returncode}")
        return {"n": n1 - n0, "s": t1 - t0, "cpu": c1 - c0}

    def close(self) -> None:
        self.proc.send_signal(signal.SIGCONT)
        stop(self.proc, 30)


async def _total_len(redis: Any) -> int:
    # streams are trimmed (MAXLEN ~), so count what was added: the last entry ID's sequence is
    # not usable, but XINFO STREAM's entries-added is exactly that
    total = 0
    async for key in redis.scan_iter(match="gex:*:snap", count=1000):
        info = await redis.xinfo_stream(key)
        total += int(info["entries-added"])
    return total


class Naive:
    """The obvious script: serial SDK calls, raw JSON into a stream, a flip check in Python."""

    def __init__(self, redis_url: str, base_url: str, symbols: list[str]) -> None:
        import redis as redis_sync
        from flashalpha import FlashAlpha

        self.fa = FlashAlpha(KEY, base_url=base_url)
        self.r = redis_sync.Redis.from_url(redis_url)
        self.symbols = symbols
        self.last_side: dict[str, int] = {}
        self.flips = 0
        self.i = 0

    def one(self) -> None:
        sym = self.symbols[self.i % len(self.symbols)]
        self.i += 1
        data = self.fa.flow_gex(sym)
        self.r.xadd(f"naive:{sym}", {"json": json.dumps(data)}, maxlen=MAXLEN, approximate=True)
        flip, spot = data.get("live_gamma_flip"), data["underlying_price"]
        if flip is not None:
            side = 1 if spot > flip else -1
            if self.last_side.get(sym, side) != side:
                self.flips += 1
            self.last_side[sym] = side

    async def window(self, seconds: float) -> dict[str, float]:
        until = time.perf_counter() + 0.3
        while time.perf_counter() < until:
            self.one()
        n = 0
        cpu0, t0 = time.process_time(), time.perf_counter()
        while time.perf_counter() < t0 + seconds:  # blocking on purpose: the naive script
            self.one()
            n += 1
        return {"n": n, "s": time.perf_counter() - t0, "cpu": time.process_time() - cpu0}


# --- main ------------------------------------------------------------------------------------


def _summary(windows: list[dict[str, float]]) -> dict[str, Any]:
    rates = [w["n"] / w["s"] for w in windows]
    cpu = [1000 * w["cpu"] / max(w["n"], 1) for w in windows]
    return {
        "per_s": statistics.median(rates),
        "per_s_windows": [round(r, 1) for r in rates],
        "cpu_ms_per_snapshot": statistics.median(cpu),
        "n": sum(int(w["n"]) for w in windows),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    symbols = symbol_names(args.symbols)
    pin(1)
    windows: dict[str, list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="gex-bench-pipeline-") as tmp:
        server = RedisServer(Path(tmp) / "redis", aof=False)
        server.start()
        if server.proc is not None and (os.cpu_count() or 1) > 1:
            os.sched_setaffinity(server.proc.pid, {0})
        up, base_url = start_upstream(args.symbols)
        daemon: Daemon | None = None
        try:
            contenders: dict[str, Any] = {
                "ceiling": Ceiling(base_url, symbols),
                "pipeline": Pipeline(server.url, base_url, symbols),
                "naive": Naive(server.url, base_url, symbols),
            }
            if not args.no_daemon:
                daemon = Daemon(server.url, base_url, symbols, Path(tmp))
                contenders["daemon"] = daemon
            if args.profile:
                import cProfile

                contenders["pipeline"].profile = cProfile.Profile()
            per_window = args.seconds / args.rounds
            for _ in range(args.rounds):
                for name, c in contenders.items():
                    windows.setdefault(name, []).append(asyncio.run(c.window(per_window)))
            if args.profile:
                contenders["pipeline"].profile.dump_stats(str(args.profile))
            outcomes = contenders["pipeline"].outcomes
            if args.latency_ms > 0:
                # the same two contenders against an upstream that answers after a realistic
                # internet round trip: where a serial loop spends its time in practice
                slow, slow_url = start_upstream(args.symbols, latency_ms=args.latency_ms)
                try:
                    for name, c in (
                        ("pipeline", Pipeline(server.url, slow_url, symbols)),
                        ("naive", Naive(server.url, slow_url, symbols)),
                    ):
                        windows[f"{name}@latency"] = [asyncio.run(c.window(per_window))]
                finally:
                    stop(slow)
        finally:
            if daemon is not None:
                daemon.close()
            stop(up)
            server.stop()
    res: dict[str, Any] = {k: _summary(v) for k, v in windows.items()}
    res["pipeline"]["outcomes"] = outcomes
    ceil, pipe, nai = (res[k]["per_s"] for k in ("ceiling", "pipeline", "naive"))
    res["ratio_vs_ceiling"] = pipe / ceil
    res["ratio_vs_naive"] = pipe / nai
    # CPU-based ratios: how many snapshots one core would do, whatever else ran at the time
    res["cpu_ratio_vs_ceiling"] = res["ceiling"]["cpu_ms_per_snapshot"] / max(
        res["pipeline"]["cpu_ms_per_snapshot"], 1e-9
    )
    res["cpu_ratio_vs_naive"] = res["naive"]["cpu_ms_per_snapshot"] / max(
        res["pipeline"]["cpu_ms_per_snapshot"], 1e-9
    )
    if "pipeline@latency" in res:
        res["latency_ms"] = args.latency_ms
        res["ratio_vs_naive_at_latency"] = (
            res["pipeline@latency"]["per_s"] / res["naive@latency"]["per_s"]
        )
    if "daemon" in res:
        res["daemon_ratio_vs_ceiling"] = res["daemon"]["per_s"] / ceil
        res["daemon_ratio_vs_naive"] = res["daemon"]["per_s"] / nai
    res["params"] = {"symbols": args.symbols, "seconds": args.seconds, "rounds": args.rounds,
                     "strikes": 200, "concurrency": 16, "cpus": os.cpu_count()}  # fmt: skip
    return res


def report(res: dict[str, Any]) -> None:
    ceil = res["ceiling"]
    nai = res["naive"]
    p = res["params"]
    table = Table(
        title=f"pipeline throughput: {p['symbols']} symbols x 200 strikes, {p['rounds']} "
        f"interleaved windows, {p['seconds']:g} s each contender, client on 1 core"
    )
    for col in ("contender", "snapshots/s", "x ceiling", "x naive", "CPU ms/snap", "x naive CPU"):
        table.add_column(col, justify="left" if col == "contender" else "right")
    rows = [
        ("fetch ceiling (aiohttp + JSON decode)", res["ceiling"]),
        ("gex-alertd pipeline (Poller path)", res["pipeline"]),
    ]
    if "daemon" in res:
        rows.append(("gex-alertd run (process, scheduler)", res["daemon"]))
    rows.append(("naive (SDK serial loop + XADD json)", res["naive"]))
    for name, r in rows:
        cpu = r["cpu_ms_per_snapshot"]
        table.add_row(
            name, f"{r['per_s']:,.0f}", f"{r['per_s'] / ceil['per_s']:.2f}",
            f"{r['per_s'] / nai['per_s']:.1f}", f"{cpu:.2f}",
            f"{nai['cpu_ms_per_snapshot'] / cpu:.1f}" if cpu else "-",
        )  # fmt: skip
    Console(width=120).print(table)
    if "pipeline@latency" in res:
        Console(width=120).print(
            f"with {res['latency_ms']:g} ms upstream latency: pipeline "
            f"{res['pipeline@latency']['per_s']:,.0f}/s, naive {res['naive@latency']['per_s']:,.0f}"
            f"/s: {res['ratio_vs_naive_at_latency']:.1f}x"
        )
    Console(width=120).print(
        f"goals: >= 0.5x fetch ceiling: {res['ratio_vs_ceiling']:.2f} "
        f"(by CPU per snapshot {res['cpu_ratio_vs_ceiling']:.2f}); "
        f">= 6x naive: {res['ratio_vs_naive']:.1f} (by CPU {res['cpu_ratio_vs_naive']:.1f})"
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--symbols", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=12.0, help="per contender, all rounds")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--quick", action="store_true", help="6 s per contender")
    ap.add_argument("--no-daemon", action="store_true", help="skip the `gex-alertd run` row")
    ap.add_argument(
        "--latency-ms", type=float, default=20.0,
        help="also compare pipeline and naive against an upstream this slow (0: skip)",
    )  # fmt: skip
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--profile", type=Path, default=None, help="cProfile the Poller windows")
    args = ap.parse_args(argv)
    if args.quick:
        args.seconds = min(args.seconds, 6.0)
        args.rounds = min(args.rounds, 3)
    res = run(args)
    report(res)
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n")
    return res


if __name__ == "__main__":
    main()
