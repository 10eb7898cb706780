"""Scale: RSS and CPU of the real daemon watching 50, 500 and 5,000 symbols at a 15 s interval.

`gex-alertd run` as a subprocess (its own process: nothing else is counted), with four rules on
every symbol (flip_cross, net_gex_sign, threshold, oi_change basis poll), a private
redis-server, and an upstream in a separate process. RSS (VmRSS) and CPU (utime + stime) come
from /proc/<pid>; CPU is averaged over a measuring window that starts after a warm-up of one
full interval (every symbol polled and committed at least once, so caches and Redis state are
at their steady size). The window is 30 s, i.e. 2 full cycles (with --quick, what `make bench`
runs: one cycle, 15 s, at 500 and 5,000 symbols only); `warn` counts warning and error log
lines over the whole run.

The upstream is `bench.replay_upstream` (the simulator's 200-strike bodies, new as_of per
request). The simulator itself cannot be the upstream at 5,000 symbols on this machine: it
computes a fresh 200-strike body in ~5-10 ms of pure Python, so 5,000 symbols at 15 s (333
bodies/s) would need 2-3 cores of its own; building its 5,000 chains also takes ~25 s.

    python -m bench.bench_scale [--sizes 50,500,5000] [--interval 15] [--window 30]
                                [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import redis
import yaml
from rich.console import Console
from rich.table import Table

from bench.bench_pipeline import RULES, pinned, start_upstream, stop
from bench.replay_upstream import symbol_names
from tests.support.redis_server import RedisServer

TICK = os.sysconf("SC_CLK_TCK")
FULL_SIZES = "50,500,5000"
QUICK_SIZES = "500,5000"


def proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def proc_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def served(base_url: str) -> int:
    with urllib.request.urlopen(f"{base_url}/stats", timeout=10) as r:
        return int(json.loads(r.read())["served"])


def config_text(redis_url: str, base_url: str, symbols: list[str], interval: float) -> str:
    tree = {
        "source": {"kind": "flowgex", "base_url": base_url, "api_key": "bench-key",
                   "requests_per_min": 1_000_000, "timeout_s": 30},
        "redis": {"url": redis_url, "retention": "7d"},
        "watch": {"interval_s": interval, "jitter_s": 1, "market_hours": "always",
                  "symbols": symbols},
        "channels": {"tty": {"type": "console", "min_severity": "critical"}},
        "rules": RULES,
        "ops": {"listen": None, "log_format": "json", "log_level": "warning"},
    }  # fmt: skip
    return yaml.safe_dump(tree)


def stored(r: redis.Redis, symbols: list[str]) -> int:
    pipe = r.pipeline(transaction=False)
    for s in symbols:
        pipe.xlen(f"gex:{{{s}}}:snap")
    return sum(pipe.execute())


def measure(n: int, interval: float, window: float, tmp: Path, base_url: str) -> dict[str, Any]:
    symbols = symbol_names(n)
    server = RedisServer(tmp / f"redis-{n}", aof=False)
    server.start()
    r = redis.Redis.from_url(server.url)
    cfg = tmp / f"config-{n}.yaml"
    cfg.write_text(config_text(server.url, base_url, symbols, interval))
    exe = str(Path(sys.executable).with_name("gex-alertd"))
    log = (tmp / f"daemon-{n}.log").open("wb")
    t_start = time.monotonic()
    proc = subprocess.Popen(
        [*pinned(1), exe, "run", "--config", str(cfg)], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        # warm-up: until every symbol has a stored snapshot, then one more interval
        deadline = time.monotonic() + interval * 4 + 60
        while stored(r, symbols) < n:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"daemon did not cover {n} symbols; see {log.name}")
            time.sleep(0.5)
        first_cycle_s = time.monotonic() - t_start
        time.sleep(interval)
        cpu0, s0, n0 = proc_cpu(proc.pid), served(base_url), stored(r, symbols)
        t0 = time.monotonic()
        rss: list[float] = []
        while time.monotonic() < t0 + window:
            rss.append(proc_rss_mb(proc.pid))
            time.sleep(1.0)
        cpu1, s1, n1 = proc_cpu(proc.pid), served(base_url), stored(r, symbols)
        t1 = time.monotonic()
        if proc.poll() is not None:
            raise RuntimeError(f"daemon exited with {proc.returncode}")
    finally:
        stop(proc, 60)
        log.close()
        r.close()
        server.stop()
    took = t1 - t0
    text = (tmp / f"daemon-{n}.log").read_text(errors="replace")
    problems = sum(
        '"level": "warning"' in ln or '"level": "error"' in ln for ln in text.splitlines()
    )
    return {
        "log_warnings_and_errors": problems,
        "symbols": n,
        "rss_mb_max": max(rss),
        "rss_mb_end": rss[-1],
        "cpu_cores": (cpu1 - cpu0) / took,
        "polls_per_s": (s1 - s0) / took,
        "snapshots_per_s": (n1 - n0) / took,
        "expected_per_s": n / interval,
        "startup_to_full_coverage_s": first_cycle_s,
        "window_s": took,
        "wall_s": time.monotonic() - t_start,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default=None, help="default 50,500,5000 (500,5000 with --quick)")
    ap.add_argument("--interval", type=float, default=15.0)
    ap.add_argument("--window", type=float, default=30.0, help="2 full cycles at 15 s")
    ap.add_argument("--quick", action="store_true", help="windows of one interval")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.quick:
        # most of this bench's wall time is, per size, the settle interval plus the window, so
        # quick measures one cycle (every symbol still polled once inside it) at two sizes: the
        # goals are at 5,000, and 500 next to it still shows the growth per symbol
        args.window = min(args.window, args.interval)
        args.sizes = args.sizes or QUICK_SIZES
    args.sizes = args.sizes or FULL_SIZES
    sizes = [int(x) for x in args.sizes.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="gex-bench-scale-") as tmp:
        up, base_url = start_upstream(max(sizes), cpu=0)
        try:
            for n in sizes:
                rows.append(measure(n, args.interval, args.window, Path(tmp), base_url))
        finally:
            stop(up)
    table = Table(
        title=f"scale: gex-alertd run, {args.interval:g} s interval, 200 strikes, 4 rules/symbol, "
        f"{args.window:g} s window after warm-up"
    )
    cols = ("symbols", "RSS MB", "CPU cores", "snapshots/s", "of expected", "full cover s", "warn",
            "wall s")  # fmt: skip
    for col in cols:
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            f"{r['symbols']:,}", f"{r['rss_mb_max']:.0f}", f"{r['cpu_cores']:.3f}",
            f"{r['snapshots_per_s']:.1f}", f"{r['snapshots_per_s'] / r['expected_per_s']:.2f}",
            f"{r['startup_to_full_coverage_s']:.1f}", str(r["log_warnings_and_errors"]),
            f"{r['wall_s']:.0f}",
        )  # fmt: skip
    Console(width=120).print(table)
    big = rows[-1]
    Console(width=120).print(
        f"goals at {big['symbols']:,} symbols: RSS < 150 MB: {big['rss_mb_max']:.0f} MB; "
        f"CPU < 1 core: {big['cpu_cores']:.2f}"
    )
    res = {"interval_s": args.interval, "window_s": args.window, "rows": rows}
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n")
    return res


if __name__ == "__main__":
    main()
