"""Pipeline throughput: snapshots committed to Redis with rules evaluated, per second.

Three contenders, same run, same upstream, same Redis, each on one core (CPU 1; the upstream
and redis-server share CPU 0), 200 symbols x 200 strikes by default:

- ceiling: aiohttp, `--max-concurrency` GETs in flight, JSON decode (msgspec, untyped), nothing
  else. No client can do the daemon's job faster than it can fetch and parse. It is the
  goal's yardstick (issue 12); a second row, "fetch ceiling, the daemon's own client", does the
  same with the daemon's HTTP client (sources/http.py), so the report shows how much of the
  daemon's ratio comes from the client rather than from the rest of its work.
- daemon (the headline): the real `gex-alertd run` process as it runs by default (scheduler,
  poll pool, the asyncio loop; when uvloop is installed the same build with `--uvloop` runs
  too, for the comparison), every symbol at `interval_s` 0.02 (far more than it can do:
  polled as fast as possible), `source.requests_per_min` 10,000,000 (the budget never waits) and
  `source.max_concurrency` `--max-concurrency` (default 16, the daemon's default; the pool
  then runs 2 x that many poll workers). Counted from the stream lengths in Redis; paused
  (SIGSTOP) while the others run.
- naive: what a user would write first: the official `flashalpha` SDK in a serial loop,
  `json.dumps` of the response into a Redis stream (`XADD ... MAXLEN ~`), a flip check in
  Python.
The in-process `Poller` contender of earlier runs is gone: since the poll pool (issue 12) it
measured a loop the daemon no longer runs (one task per symbol, back to back, on the default
loop) and came out below the real process; the process itself is measured, and `--profile`
profiles it.

Rules (all symbols): flip_cross, net_gex_sign, threshold on spot, oi_change (basis poll). Streams
are trimmed to 2,000 entries (MAXLEN ~) for every contender, so Redis memory stays flat; the
daemon's counts come from XLEN, so the bench checks that no stream reached that length.

Upstream: `bench.replay_upstream` (the simulator's 200-strike bodies, a new `as_of` on every
request: caching off as far as the client can tell, at the cost of a copy; the simulator itself
computes ~150 fresh bodies/s, which would cap every contender and hide the differences).
`--latency-ms` (default 20) then runs the daemon and the naive loop once more against an
upstream answering that late (a short internet round trip), each with a Redis of its own.

    python -m bench.bench_pipeline [--symbols 200] [--seconds 12] [--rounds 4]
                                   [--max-concurrency 16] [--latency-ms 20] [--quick]
                                   [--json PATH] [--profile out.prof]

`--quick` (what `make bench` runs): 3 s per contender in 2 interleaved windows of 1.5 s, still at
200 symbols. `--profile F` runs the daemon under cProfile, timed by process CPU time (so its
pauses and idle waits count for nothing), writes F and prints where its CPU went; the rates
of a profiled run are not figures.

This module also holds what the other benches of the real process share: `DaemonProcess`
(start, pause between windows, count, stop), `scan_log` (its problem lines), the upstream.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import inspect
import json
import os
import re
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
import redis
import yaml
from rich.console import Console
from rich.table import Table

from bench.replay_upstream import symbol_names
from gex_alertd import keys
from tests.support.redis_server import RedisServer, free_port

KEY = "bench-key"
HAVE_UVLOOP = importlib.util.find_spec("uvloop") is not None
LOOP = "the asyncio loop (the default)"
MAXLEN = 2000
UPSTREAM_START_S = 60
TICK = os.sysconf("SC_CLK_TCK")
REQUESTS_PER_MIN = 10_000_000  # far beyond loopback: the request budget never waits
MAX_CONCURRENCY = 16  # the daemon's default, and the ceiling's requests in flight
FAST_INTERVAL_S = 0.02  # "as fast as possible": 200 symbols want 10,000 polls/s
GOAL_X_CEILING = 0.5
GOAL_X_NAIVE = 6.0
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


def start_redis(path: Path, cpu: int = 0) -> RedisServer:
    server = RedisServer(path, aof=False)
    server.start()
    if server.proc is not None and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(server.proc.pid, {cpu})
    return server


def stop(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """terminate, then kill if it has not exited within timeout."""
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)


def config_tree(
    redis_url: str,
    base_url: str,
    symbols: list[str],
    interval: float,
    *,
    max_concurrency: int = MAX_CONCURRENCY,
    max_len: int | None = MAXLEN,
    jitter_s: float = 0.0,
    api_key: str = KEY,
    outcomes: bool = True,
) -> dict[str, Any]:
    """A `gex-alertd run` config for a bench: no trimming when `max_len` is None. A key of
    its own gives the daemon its own as_of count at the replay upstream (it needs a Redis of its
    own then: another client's snapshots would be ahead of its as_of). `outcomes` False turns
    the live outcome duty off (bench_overload: see there)."""
    return {
        "source": {"kind": "flowgex", "base_url": base_url, "api_key": api_key,
                   "requests_per_min": REQUESTS_PER_MIN, "max_concurrency": max_concurrency,
                   "timeout_s": 30},
        "redis": {"url": redis_url, "retention": None, "max_len": max_len},
        "watch": {"interval_s": interval, "jitter_s": jitter_s, "market_hours": "always",
                  "symbols": symbols},
        "channels": {"tty": {"type": "console"}},
        "rules": RULES,
        "ops": {"listen": None, "log_level": "warning", "log_format": "json"},
        "outcomes": {"enabled": outcomes},
    }  # fmt: skip


# --- the real process ------------------------------------------------------------------------


def proc_stat(pid: int) -> list[str]:
    """/proc/PID/stat's fields after the command name (which may hold spaces and parentheses):
    field N of proc(5) is at index N - 3."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def proc_cpu(pid: int) -> float:
    """utime + stime of a process, seconds."""
    fields = proc_stat(pid)
    return (int(fields[11]) + int(fields[12])) / TICK


def proc_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def stream_lengths(r: redis.Redis, symbols: list[str]) -> list[int]:
    """XLEN of every symbol's snapshot stream, in one pipelined round trip."""
    pipe = r.pipeline(transaction=False)
    for s in symbols:
        pipe.xlen(keys.snap(s))
    return [int(n) for n in pipe.execute()]


# any of these in a line is a problem whatever its level: APScheduler's per-fire lines of the
# old engine ("skipped: maximum number of running instances", "was missed by", "Error running
# job", 'Job "..." raised an exception') and a traceback
MARKERS = ("skipped", "missed", "Error running job", "raised an exception", "Traceback")
_ALERT_LINE = re.compile(r"^\d{4}-\d\d-\d\dT[\d:.]+Z (INFO|WARNING|CRITICAL) ")
_DECODE_LINE = msgspec.json.Decoder()


def scan_log(text: str, keep: int = 3) -> dict[str, Any]:
    """Count a daemon's problem lines (JSON log, `ops.log_format: json`, console channel on the
    same stdout): a line is a problem when it is a warning/error/critical log line, holds one of
    MARKERS, or is neither a JSON log line nor a console alert (a bare traceback, a crash).
    `first` keeps the first few distinct ones."""
    levels: dict[str, int] = {}
    markers: dict[str, int] = {}
    problems = other = alerts = 0
    first: list[str] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        if _ALERT_LINE.match(line):
            alerts += 1
            continue
        bad = False
        shown = line[:160]
        rec = None
        if line.startswith("{"):
            try:
                rec = _DECODE_LINE.decode(line)
            except msgspec.DecodeError:
                rec = None
        if isinstance(rec, dict):
            level = str(rec.get("level", ""))
            shown = f"{level}: {rec.get('event', '')}"[:160]
            if level in ("warning", "error", "critical"):
                levels[level] = levels.get(level, 0) + 1
                bad = True
        else:
            other += 1
            bad = True
        for m in MARKERS:
            if m in line:
                markers[m] = markers.get(m, 0) + 1
                bad = True
        if bad:
            problems += 1
            if shown not in first and len(first) < keep:
                first.append(shown)
    return {
        "problem_lines": problems,
        "levels": levels,
        "marker_lines": markers,
        "other_lines": other,
        "alert_lines": alerts,
        "first": first,
    }


_PROFILED = """
import cProfile, sys, time
from gex_alertd.cli import main
prof = cProfile.Profile(time.process_time)  # CPU time: pauses and idle waits count for nothing
prof.enable()
try:
    main(["run", "--config", sys.argv[1]])
finally:
    prof.disable()
    prof.dump_stats(sys.argv[2])
"""


class DaemonProcess:
    """The real `gex-alertd run` on CPU 1, its stdout (JSON log + console alerts) in a file.

    Paused with SIGSTOP while other contenders run: keep each pause under the daemon's Redis
    socket timeout (5 s), or a command sent just before it may time out on resume."""

    def __init__(
        self,
        name: str,
        tree: dict[str, Any],
        tmp: Path,
        *,
        profile: Path | None = None,
        extra: tuple[str, ...] = (),
        wrap: tuple[str, ...] = (),
    ) -> None:
        self.name = name
        self.symbols: list[str] = list(tree["watch"]["symbols"])
        self.max_len: int | None = tree["redis"]["max_len"]
        self.config = tmp / f"{name}.yaml"
        self.config.write_text(yaml.safe_dump(tree))
        self.log_path = tmp / f"{name}.log"
        self.redis = redis.Redis.from_url(tree["redis"]["url"])
        exe = str(Path(sys.executable).with_name("gex-alertd"))
        cmd = [exe, "run", "--config", str(self.config), *extra]
        if profile is not None:
            cmd = [sys.executable, "-c", _PROFILED, str(self.config), str(profile)]
        self.started = time.monotonic()
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [*pinned(1), *wrap, *cmd], stdout=log, stderr=subprocess.STDOUT
            )
        self.paused = False

    @property
    def pid(self) -> int:
        return self.proc.pid

    def check(self) -> None:
        if self.proc.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-600:]
            raise RuntimeError(f"{self.name}: exited with {self.proc.returncode}: {tail}")

    def lengths(self) -> list[int]:
        lens = stream_lengths(self.redis, self.symbols)
        if self.max_len is not None and max(lens, default=0) >= self.max_len:
            raise RuntimeError(
                f"{self.name}: a stream reached its MAXLEN {self.max_len}: XLEN no longer "
                "counts commits (run fewer seconds)"
            )
        return lens

    def stored(self) -> int:
        return sum(self.lengths())

    def warm_up(self, deadline_s: float, then_s: float = 1.0) -> float:
        """Until every symbol has a stored snapshot (bounded), then `then_s` more; the seconds
        from start to full coverage."""
        deadline = time.monotonic() + deadline_s
        while min(self.lengths(), default=1) == 0:
            self.check()
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: not every symbol stored in {deadline_s:.0f} s")
            time.sleep(0.2)
        covered = time.monotonic() - self.started
        time.sleep(then_s)
        return covered

    def pause(self) -> None:
        self.proc.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)
        self.paused = False

    def window(self, seconds: float, settle_s: float = 0.5) -> dict[str, Any]:
        """Resume, settle, count commits and CPU over `seconds`, pause again."""
        self.resume()
        time.sleep(settle_s)
        lens0, c0, t0 = self.lengths(), proc_cpu(self.pid), time.perf_counter()
        time.sleep(seconds)
        lens1, c1, t1 = self.lengths(), proc_cpu(self.pid), time.perf_counter()
        rss = proc_rss_mb(self.pid)
        self.pause()
        self.check()
        per_symbol = [b - a for a, b in zip(lens0, lens1, strict=True)]
        return {
            "n": sum(per_symbol), "s": t1 - t0, "cpu": c1 - c0, "rss_mb": rss,
            "min_per_symbol": min(per_symbol), "max_per_symbol": max(per_symbol),
        }  # fmt: skip

    def terminate(self, timeout: float = 60.0) -> dict[str, Any]:
        """SIGTERM (resumed first) and wait: exit code and seconds to exit (None: killed)."""
        if self.proc.poll() is None:
            self.resume()
            t0 = time.monotonic()
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                self.redis.close()
                return {"exit_code": None, "exit_s": None, "killed_after_s": timeout}
            took: float | None = time.monotonic() - t0
        else:
            took = None
        self.redis.close()
        return {"exit_code": self.proc.returncode, "exit_s": took}

    def log(self) -> dict[str, Any]:
        return scan_log(self.log_path.read_text(errors="replace"))


# --- contenders ------------------------------------------------------------------------------
# Each measures one window and returns {"n": snapshots, "s": wall seconds, "cpu": CPU seconds of
# the contender's own process}. The machine may be shared (load from other work), so windows
# are interleaved round-robin and the figures are medians; CPU per snapshot is reported too,
# because it barely depends on the load.


async def timed_fetches(
    fetch: Callable[[int], Awaitable[object]], conc: int, seconds: float
) -> dict[str, float]:
    """`conc` workers each awaiting `fetch(j)` in turn (worker i takes j = i, i + conc, ...),
    0.3 s of warm-up and then `seconds` measured: {"n": fetches, "s": wall seconds, "cpu":
    this process's CPU seconds}. The loop of both ceiling rows and of bench.http_clients."""
    count = 0

    async def worker(i: int, until: float) -> None:
        nonlocal count
        j = i
        while time.perf_counter() < until:
            await fetch(j)
            count += 1
            j += conc

    await asyncio.gather(*(worker(i, time.perf_counter() + 0.3) for i in range(conc)))
    count = 0
    cpu0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(i, t0 + seconds) for i in range(conc)))
    return {"n": count, "s": time.perf_counter() - t0, "cpu": time.process_time() - cpu0}


class Ceiling:
    def __init__(self, base_url: str, symbols: list[str], conc: int = MAX_CONCURRENCY) -> None:
        self.base_url, self.symbols, self.conc = base_url, symbols, conc
        self.decode = msgspec.json.Decoder().decode

    async def window(self, seconds: float) -> dict[str, float]:
        import aiohttp

        conn = aiohttp.TCPConnector(limit=self.conc)
        async with aiohttp.ClientSession(connector=conn, headers={"X-Api-Key": KEY}) as http:

            async def fetch(j: int) -> None:
                sym = self.symbols[j % len(self.symbols)]
                async with http.get(f"{self.base_url}/v1/flow/gex/{sym}") as r:
                    body = await r.read()
                self.decode(body)

            return await timed_fetches(fetch, self.conc, seconds)


class OwnClientCeiling(Ceiling):
    """The ceiling with the daemon's own HTTP client instead of aiohttp (same requests in
    flight, same decode): what fetching costs the daemon before any of its own work."""

    async def window(self, seconds: float) -> dict[str, float]:
        from gex_alertd.sources.http import HttpClient

        http = HttpClient(self.base_url, max_connections=self.conc)
        reqs = [http.request_bytes(f"/v1/flow/gex/{s}", {"X-Api-Key": KEY}) for s in self.symbols]

        async def fetch(j: int) -> None:
            resp = await http.get(reqs[j % len(reqs)], timeout_s=30, max_body_bytes=1 << 24)
            self.decode(resp.body)

        try:
            return await timed_fetches(fetch, self.conc, seconds)
        finally:
            await http.close()


class Naive:
    """The obvious script: serial SDK calls, raw JSON into a stream, a flip check in Python."""

    def __init__(self, redis_url: str, base_url: str, symbols: list[str]) -> None:
        from flashalpha import FlashAlpha

        self.fa = FlashAlpha(KEY, base_url=base_url)
        self.r = redis.Redis.from_url(redis_url)
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

    def window(self, seconds: float) -> dict[str, float]:
        until = time.perf_counter() + 0.3
        while time.perf_counter() < until:
            self.one()
        n = 0
        cpu0, t0 = time.process_time(), time.perf_counter()
        while time.perf_counter() < t0 + seconds:  # blocking on purpose: the naive script
            self.one()
            n += 1
        return {"n": n, "s": time.perf_counter() - t0, "cpu": time.process_time() - cpu0}


def measure(contender: Any, seconds: float) -> dict[str, Any]:
    """One window of a contender, whether its `window` is a coroutine or a plain function."""
    out = contender.window(seconds)
    return asyncio.run(out) if inspect.iscoroutine(out) else out


# --- main ------------------------------------------------------------------------------------


def summary(windows: list[dict[str, Any]]) -> dict[str, Any]:
    rates = [w["n"] / w["s"] for w in windows]
    cpu = [1000 * w["cpu"] / max(w["n"], 1) for w in windows]
    out: dict[str, Any] = {
        "per_s": statistics.median(rates),
        "per_s_windows": [round(r, 1) for r in rates],
        "cpu_ms_per_snapshot": statistics.median(cpu),
        "cpu_cores": statistics.median(w["cpu"] / w["s"] for w in windows),
        "n": sum(int(w["n"]) for w in windows),
    }
    if "min_per_symbol" in windows[0]:
        out["min_per_symbol_per_window"] = min(w["min_per_symbol"] for w in windows)
        out["rss_mb_max"] = max(w["rss_mb"] for w in windows)
    return out


def _latency_rows(
    args: argparse.Namespace, symbols: list[str], tmp: Path, per_window: float
) -> dict[str, list[dict[str, Any]]]:
    """The daemon and the naive loop against an upstream answering `--latency-ms` late, each
    once, on a Redis of their own (the replay upstream's as_of restarts: the first Redis would
    call every snapshot a repeat)."""
    slow, slow_url = start_upstream(args.symbols, latency_ms=args.latency_ms)
    server = start_redis(tmp / "redis-latency")
    daemon: DaemonProcess | None = None
    try:
        tree = config_tree(
            server.url, slow_url, symbols, FAST_INTERVAL_S, max_concurrency=args.max_concurrency
        )
        daemon = DaemonProcess("daemon-latency", tree, tmp)
        daemon.warm_up(60)
        return {
            "daemon@latency": [daemon.window(per_window)],
            "naive@latency": [measure(Naive(server.url, slow_url, symbols), per_window)],
        }
    finally:
        if daemon is not None:
            daemon.terminate()
        stop(slow)
        server.stop()


def run(args: argparse.Namespace) -> dict[str, Any]:
    symbols = symbol_names(args.symbols)
    pin(1)
    windows: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="gex-bench-pipeline-") as tmp_name:
        tmp = Path(tmp_name)
        server = start_redis(tmp / "redis")
        servers = [server]
        daemons: list[DaemonProcess] = []
        up, base_url = start_upstream(args.symbols)
        daemon: DaemonProcess | None = None
        stopped: dict[str, Any] = {}
        try:
            tree = config_tree(
                server.url, base_url, symbols, FAST_INTERVAL_S,
                max_concurrency=args.max_concurrency,
            )  # fmt: skip
            daemon = DaemonProcess("daemon", tree, tmp, profile=args.profile)
            covered = daemon.warm_up(90)
            daemon.pause()
            contenders: dict[str, Any] = {
                "ceiling": Ceiling(base_url, symbols, args.max_concurrency),
                "ceiling, own client": OwnClientCeiling(base_url, symbols, args.max_concurrency),
                "daemon": daemon,
                "naive": Naive(server.url, base_url, symbols),
            }
            if not args.profile and HAVE_UVLOOP:
                # the same build on uvloop (`--uvloop`), with a Redis of its own (one Redis
                # would make the two daemons split the watchlist): is uvloop the faster loop?
                uv_server = start_redis(tmp / "redis-uvloop")
                servers.append(uv_server)
                uv_tree = config_tree(
                    uv_server.url, base_url, symbols, FAST_INTERVAL_S,
                    max_concurrency=args.max_concurrency,
                )  # fmt: skip
                uv = DaemonProcess("daemon-uvloop", uv_tree, tmp, extra=("--uvloop",))
                daemons.append(uv)
                uv.warm_up(90)
                uv.pause()
                contenders["daemon (uvloop)"] = uv
            per_window = args.seconds / args.rounds
            for _ in range(args.rounds):
                for name, c in contenders.items():
                    windows.setdefault(name, []).append(measure(c, per_window))
            stored_total = daemon.stored()
            stopped = daemon.terminate()
            if args.latency_ms > 0:
                windows.update(_latency_rows(args, symbols, tmp, per_window))
        finally:
            if daemon is not None and not stopped:
                daemon.terminate()
            for other in daemons:
                other.terminate()
            stop(up)
            for srv in servers:
                srv.stop()
        log = daemon.log()
    res: dict[str, Any] = {k: summary(v) for k, v in windows.items()}
    ceil, dmn, nai = (res[k] for k in ("ceiling", "daemon", "naive"))
    res["daemon"].update(
        startup_to_full_coverage_s=covered, log=log, stop=stopped, stored_total=stored_total
    )
    on_uvloop = res.get("daemon (uvloop)")
    if on_uvloop is not None:  # uvloop against the standard loop, same build, same windows
        res["uvloop_speedup"] = on_uvloop["per_s"] / dmn["per_s"]
        res["uvloop_cpu_speedup"] = dmn["cpu_ms_per_snapshot"] / on_uvloop["cpu_ms_per_snapshot"]
    res["ratio_vs_ceiling"] = dmn["per_s"] / ceil["per_s"]
    res["ratio_vs_naive"] = dmn["per_s"] / nai["per_s"]
    # CPU-based ratios: how many snapshots one core would do, whatever else ran at the time
    res["cpu_ratio_vs_ceiling"] = ceil["cpu_ms_per_snapshot"] / dmn["cpu_ms_per_snapshot"]
    res["cpu_ratio_vs_naive"] = nai["cpu_ms_per_snapshot"] / dmn["cpu_ms_per_snapshot"]
    own = res["ceiling, own client"]
    res["ratio_vs_own_client_ceiling"] = dmn["per_s"] / own["per_s"]
    res["cpu_ratio_vs_own_client_ceiling"] = own["cpu_ms_per_snapshot"] / dmn["cpu_ms_per_snapshot"]
    res["goals"] = {
        "x_ceiling": GOAL_X_CEILING, "x_naive": GOAL_X_NAIVE,
        "x_ceiling_met": res["ratio_vs_ceiling"] >= GOAL_X_CEILING,
        "x_naive_met": res["ratio_vs_naive"] >= GOAL_X_NAIVE,
    }  # fmt: skip
    if "daemon@latency" in res:
        res["latency_ms"] = args.latency_ms
        res["ratio_vs_naive_at_latency"] = (
            res["daemon@latency"]["per_s"] / res["naive@latency"]["per_s"]
        )
    res["params"] = {
        "symbols": args.symbols, "seconds": args.seconds, "rounds": args.rounds, "strikes": 200,
        "cpus": os.cpu_count(), "profiled": bool(args.profile),
        "daemon_settings": {
            "interval_s": FAST_INTERVAL_S, "jitter_s": 0.0,
            "requests_per_min": REQUESTS_PER_MIN, "max_concurrency": args.max_concurrency,
            "poll_workers": 2 * args.max_concurrency, "loop": LOOP,
            "max_len": MAXLEN, "log_level": "warning",
        },
    }  # fmt: skip
    return res


def _met(ok: bool) -> str:
    return "[green]met[/]" if ok else "[red]not met[/]"


def report(res: dict[str, Any]) -> None:
    console = Console(width=120)
    ceil, nai = res["ceiling"], res["naive"]
    p = res["params"]
    s = p["daemon_settings"]
    table = Table(
        title=f"pipeline throughput: {p['symbols']} symbols x 200 strikes, {p['rounds']} "
        f"interleaved windows, {p['seconds']:g} s each contender, client on 1 core"
    )
    for col in ("contender", "snapshots/s", "x ceiling", "x naive", "CPU ms/snap", "x naive CPU"):
        table.add_column(col, justify="left" if col == "contender" else "right")
    rows = [
        ("fetch ceiling (aiohttp + JSON decode)", ceil),
        ("fetch ceiling, the daemon's own client", res["ceiling, own client"]),
        (f"gex-alertd run (process), interval {s['interval_s']:g} s", res["daemon"]),
        ("naive (SDK serial loop + XADD json)", nai),
    ]
    if "daemon (uvloop)" in res:
        rows.insert(3, ("gex-alertd run --uvloop (same build)", res["daemon (uvloop)"]))
    for name, r in rows:
        cpu = r["cpu_ms_per_snapshot"]
        table.add_row(
            name, f"{r['per_s']:,.0f}", f"{r['per_s'] / ceil['per_s']:.2f}",
            f"{r['per_s'] / nai['per_s']:.1f}", f"{cpu:.2f}",
            f"{nai['cpu_ms_per_snapshot'] / cpu:.1f}" if cpu else "-",
        )  # fmt: skip
    console.print(table)
    d = res["daemon"]
    console.print(
        f"daemon settings: requests_per_min {s['requests_per_min']:,}, max_concurrency "
        f"{s['max_concurrency']} ({s['poll_workers']} poll workers), {s['loop']}; "
        f"{d['cpu_cores']:.2f} cores busy in its windows, every symbol stored "
        f"{d['startup_to_full_coverage_s']:.1f} s after start, log problems "
        f"{d['log']['problem_lines']}, SIGTERM: exit {d['stop'].get('exit_code')} "
        f"in {d['stop'].get('exit_s') or 0:.1f} s",
        highlight=False,
    )
    if "daemon@latency" in res:
        console.print(
            f"with {res['latency_ms']:g} ms upstream latency: daemon "
            f"{res['daemon@latency']['per_s']:,.0f}/s, naive {res['naive@latency']['per_s']:,.0f}"
            f"/s: {res['ratio_vs_naive_at_latency']:.1f}x",
            highlight=False,
        )
    if "uvloop_speedup" in res:
        console.print(
            f"uvloop against the asyncio loop, same build: "
            f"{res['uvloop_speedup']:.2f}x snapshots/s, {res['uvloop_cpu_speedup']:.2f}x by CPU "
            "per snapshot",
            highlight=False,
        )
    console.print(
        f"against the ceiling on the daemon's own client: {res['ratio_vs_own_client_ceiling']:.2f}"
        f" (by CPU per snapshot {res['cpu_ratio_vs_own_client_ceiling']:.2f})",
        highlight=False,
    )
    g = res["goals"]
    console.print(
        f"goals (gex-alertd run, {p['symbols']} symbols): >= {g['x_ceiling']:g}x fetch ceiling: "
        f"{res['ratio_vs_ceiling']:.2f} {_met(g['x_ceiling_met'])} (by CPU per snapshot "
        f"{res['cpu_ratio_vs_ceiling']:.2f}); >= {g['x_naive']:g}x naive: "
        f"{res['ratio_vs_naive']:.1f} {_met(g['x_naive_met'])} (by CPU "
        f"{res['cpu_ratio_vs_naive']:.1f})",
        highlight=False,
    )


# what the daemon's CPU is spent on, by cumulative time of its own stages (nested: a stage
# includes the ones indented under it); a stage whose functions are gone shows 0
STAGES: list[tuple[str, tuple[tuple[str, str], ...]]] = [
    ("poll (fetch + commit)", (("pipeline.py", "poll"),)),
    ("  fetch: HTTP + typed decode", (("flowgex.py", "fetch"),)),
    ("    typed decode + validation", (("model.py", "decode_flow_gex"),)),
    ("  commit (up to the batch hand-off)", (("commit.py", "commit"),)),
    ("    previous snapshot read back", (("store.py", "latest"), ("store.py", "latest_columns"))),
    ("    rules (Engine.evaluate)", (("engine.py", "evaluate"),)),
    ("    commit KEYS (prepare_args)", (("commit.py", "prepare_args"),)),
    ("batched EVALSHA pipelines (batching._send)", (("batching.py", "_send"),)),
    ("  commit ARGV and strike blocks, per batch (finish_batch)", (("commit.py", "finish_batch"),)),
    ("redis-py command packing (pack_command)", (("connection.py", "pack_command"),)),
    ("alert delivery (dispatcher, console)", (("dispatch.py", "_run"),)),
    ("log lines (structlog)", (("_base.py", "_proxy_to_logger"),)),
]


def profile_stages(path: Path) -> tuple[dict[str, float], float]:
    """CPU seconds per STAGES entry of a cProfile dump, and its total."""
    import pstats

    raw: dict[Any, Any] = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]  # untyped
    total = sum(tt for _cc, _nc, tt, _ct, _callers in raw.values())
    out = {}
    for label, funcs in STAGES:
        out[label] = sum(
            ct for (f, _line, fn), (_cc, _nc, _tt, ct, _c) in raw.items()
            if any(fn == name and f.endswith(file) for file, name in funcs)
        )  # fmt: skip
    return out, total


def print_stages(profiles: dict[str, tuple[Path, int]], top: int = 0) -> dict[str, Any]:
    """One column per profiled daemon: CPU ms per stored snapshot by stage (its `snapshots`
    over the whole profiled run), and the share of its total; then its top own-time entries."""
    import pstats

    table = Table(title="daemon CPU per stored snapshot by stage (cProfile, process CPU time)")
    table.add_column("stage")
    stages = {name: profile_stages(path) for name, (path, _n) in profiles.items()}
    for name in profiles:
        table.add_column(f"{name} ms", justify="right")
        table.add_column("share", justify="right")
    out: dict[str, Any] = {name: {} for name in profiles}
    for label, _funcs in [("total", ()), *STAGES]:
        cells = []
        for name, (_path, n) in profiles.items():
            per, total = stages[name]
            cpu = total if label == "total" else per[label]
            out[name][label.strip()] = 1000 * cpu / max(n, 1)
            cells += [f"{1000 * cpu / max(n, 1):.3f}", f"{cpu / (total or 1e-9):.0%}"]
        table.add_row(label, *cells)
    Console(width=120).print(table)
    for name, (path, _n) in profiles.items():
        if top:
            print(f"--- {name}: top {top} by own time")
            pstats.Stats(str(path)).sort_stats("tottime").print_stats(top)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--symbols", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=12.0, help="per contender, all rounds")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--max-concurrency", type=int, default=MAX_CONCURRENCY)
    ap.add_argument("--quick", action="store_true", help="3 s per contender")
    ap.add_argument(
        "--latency-ms", type=float, default=20.0,
        help="also compare daemon and naive against an upstream this slow (0: skip)",
    )  # fmt: skip
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--profile", type=Path, default=None, help="cProfile the daemon into F")
    args = ap.parse_args(argv)
    if args.quick:
        args.seconds = min(args.seconds, 3.0)
        args.rounds = min(args.rounds, 2)
    res = run(args)
    report(res)
    if args.profile:
        n = res["daemon"]["stored_total"]
        res["profile_ms_per_snapshot"] = print_stages({"daemon": (args.profile, n)}, top=15)
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n")
    return res


if __name__ == "__main__":
    main()
