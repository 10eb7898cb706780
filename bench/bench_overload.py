"""Overload holds: 2,000 symbols at interval_s 1 commit as much as the same build at its best.

The goal (issue 12): "2,000 symbols at interval_s 1 commits >= 0.9x what the same build does at
its best setting, with zero skip/miss/error log lines". 2,000 polls/s is more than one core
does here (a 200-strike poll and commit costs ~0.5-1 ms of daemon CPU), so the daemon is
overloaded, and the poll pool should serve every target in turn, more slowly, without
throwing throughput away or logging per poll.

Same run, same build, same upstream, each daemon the real `gex-alertd run` on CPU 1 with a
redis-server of its own (CPU 0, beside the upstream):
  - best: the settings that give this build its highest commit rate, polled as fast as
    possible (`interval_s` 0.02): `--best 200,50` runs one daemon per symbol count, and the
    best of them (by median rate) is the reference. 200 is the issue's setting; 50 checks
    that fewer streams do not do better (they did, 1.7x, while the committer kept the previous
    snapshot of only 64 streams in memory and read the others back from Redis);
  - overload: `--symbols` 2,000 at `--interval` 1 s.
All run at once through a warm-up (every symbol stored once), then in interleaved windows:
each daemon resumed (SIGCONT), left `--settle` s, measured for `--window` s, paused
(SIGSTOP), round-robin for `--rounds` rounds; the figures are medians. Commits are counted as
the growth of the snapshot streams (XLEN, untrimmed: `redis.max_len` and `retention` off);
CPU is the daemon's utime + stime over the window. Both daemons: the four rules of
bench_pipeline on every symbol, `source.requests_per_min` 10,000,000, `max_concurrency` 16
(32 poll workers), `jitter_s` 0, JSON log at warning level (`ops.log_format: json`).

Problem lines (bench_pipeline.scan_log) over each daemon's whole run, start and stop
included: warning, error and critical lines, any line with "skipped", "missed", "Error running
job", "raised an exception" or "Traceback", and any line that is neither JSON log nor alert.
At the end the overload daemon is resumed for a second and sent SIGTERM: its exit code and
the wall time to exit are recorded, and its log after SIGTERM is scanned on its own.

2,000 symbols at 1 s ask for 2,000 polls/s: a build whose best setting commits more than
2,000/s / 0.9 = 2,222/s cannot meet the literal goal, however well it holds. The bench then
also reports the ratio against what the overload daemon can reach, min(best, 2,000/s), and
its achieved interval (symbols / rate: 1.0 s when it keeps up).

    python -m bench.bench_overload [--symbols 2000] [--interval 1] [--best 200,50]
                                   [--window 3] [--rounds 4] [--quick] [--json F]
                                   [--profile DIR]

`--quick` (what `make bench` runs): 2 rounds of 2 s windows, best at 200 symbols only (the
issue's setting; 50 is the full run's check that fewer streams do not do better). `--profile
DIR` runs every daemon under cProfile (process CPU time) and prints their CPU per stored
snapshot by stage side by side; the rates of a profiled run are not figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.bench_pipeline import (
    FAST_INTERVAL_S,
    REQUESTS_PER_MIN,
    DaemonProcess,
    config_tree,
    pin,
    print_stages,
    scan_log,
    start_redis,
    start_upstream,
    stop,
    summary,
)
from bench.replay_upstream import symbol_names
from tests.support.redis_server import RedisServer

GOAL_RATIO = 0.9
WARM_UP_S = 90.0  # bound on reaching full coverage, each daemon (they start together)


def _names(best: list[int], symbols: int, interval: float) -> dict[str, tuple[int, float]]:
    out = {f"best-{n}": (n, FAST_INTERVAL_S) for n in best}
    out["overload"] = (symbols, interval)
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    pin(0)  # the bench only counts; CPU 1 is the daemons'
    plan = _names(args.best, args.symbols, args.interval)
    windows: dict[str, list[dict[str, Any]]] = {k: [] for k in plan}
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="gex-bench-overload-") as tmp_name:
        tmp = Path(tmp_name)
        up, base_url = start_upstream(max(n for n, _ in plan.values()))
        servers: list[RedisServer] = []
        daemons: dict[str, DaemonProcess] = {}
        try:
            for name, (n, interval) in plan.items():
                servers.append(start_redis(tmp / f"redis-{name}"))
                tree = config_tree(
                    servers[-1].url, base_url, symbol_names(n), interval, max_len=None
                )
                prof = args.profile / f"{name}.prof" if args.profile else None
                daemons[name] = DaemonProcess(name, tree, tmp, profile=prof)
            covered = {name: d.warm_up(WARM_UP_S, then_s=0) for name, d in daemons.items()}
            time.sleep(1.0)
            for d in daemons.values():
                d.pause()
            over = daemons["overload"]
            before = over.lengths()
            for _ in range(args.rounds):
                for name, d in daemons.items():
                    windows[name].append(d.window(args.window, args.settle))
            after = over.lengths()
            served = sorted(b - a for a, b in zip(before, after, strict=True))
            totals = {name: d.stored() for name, d in daemons.items()}
            # the stop: resumed into its busy state for a moment, then SIGTERM
            over.resume()
            time.sleep(1.0)
            log_size = over.log_path.stat().st_size
            out["stop"] = over.terminate()
            with over.log_path.open("rb") as f:
                f.seek(log_size)
                out["stop"]["log"] = scan_log(f.read().decode(errors="replace"))
            for name, d in daemons.items():
                if name != "overload":
                    d.terminate()
        finally:
            for d in daemons.values():
                d.terminate()
            stop(up)
            for s in servers:
                s.stop()
        logs = {name: d.log() for name, d in daemons.items()}
    rows = {}
    for name, (n, interval) in plan.items():
        row = summary(windows[name])
        row.update(symbols=n, interval_s=interval, log=logs[name], stored_total=totals[name])
        row["startup_to_full_coverage_s"] = covered[name]
        row["achieved_interval_s"] = n / row["per_s"] if row["per_s"] else None
        rows[name] = row
    best_name = max((k for k in rows if k != "overload"), key=lambda k: rows[k]["per_s"])
    ratio = rows["overload"]["per_s"] / rows[best_name]["per_s"]
    problems = rows["overload"]["log"]["problem_lines"]
    out["rows"] = rows
    out["best"] = best_name
    out["ratio_vs_best"] = ratio
    # 2,000 symbols at 1 s cannot commit more than 2,000/s: once the best setting does more,
    # the literal ratio measures the demand, not the engine; what it can reach is the lower
    demand = args.symbols / args.interval
    attainable = min(rows[best_name]["per_s"], demand)
    out["overload_demand_per_s"] = demand
    out["ratio_vs_attainable"] = rows["overload"]["per_s"] / attainable
    # against every candidate: the issue names 200 symbols; the build may do better elsewhere
    out["ratio_vs"] = {
        k: rows["overload"]["per_s"] / r["per_s"] for k, r in rows.items() if k != "overload"
    }
    out["cpu_ratio_vs_best"] = (
        rows[best_name]["cpu_ms_per_snapshot"] / rows["overload"]["cpu_ms_per_snapshot"]
    )
    out["overload_served_per_symbol"] = {
        "min": served[0], "median": statistics.median(served), "max": served[-1],
    }  # fmt: skip
    out["goals"] = {
        "ratio": GOAL_RATIO, "ratio_met": ratio >= GOAL_RATIO,
        "ratio_vs_attainable_met": out["ratio_vs_attainable"] >= GOAL_RATIO,
        "problem_lines": problems, "problem_lines_met": problems == 0,
    }  # fmt: skip
    out["params"] = {
        "window_s": args.window, "rounds": args.rounds, "settle_s": args.settle,
        "requests_per_min": REQUESTS_PER_MIN, "max_concurrency": 16, "poll_workers": 32,
        "jitter_s": 0.0, "strikes": 200, "cpus": os.cpu_count(),
    }  # fmt: skip
    return out


def _met(ok: bool) -> str:
    return "[green]met[/]" if ok else "[red]not met[/]"


def report(res: dict[str, Any]) -> None:
    console = Console(width=120)
    p = res["params"]
    table = Table(
        title=f"overload: gex-alertd run, 200 strikes, 4 rules/symbol, {p['rounds']} interleaved "
        f"windows of {p['window_s']:g} s per daemon"
    )
    cols = ("daemon", "symbols", "interval s", "snapshots/s", "x best", "CPU ms/snap", "cores",
            "achieved interval s", "RSS MB", "problem lines")  # fmt: skip
    for col in cols:
        table.add_column(col, justify="left" if col == "daemon" else "right")
    best = res["rows"][res["best"]]
    for name, r in res["rows"].items():
        mark = " *" if name == res["best"] else ""
        table.add_row(
            name + mark, f"{r['symbols']:,}", f"{r['interval_s']:g}", f"{r['per_s']:,.0f}",
            f"{r['per_s'] / best['per_s']:.2f}", f"{r['cpu_ms_per_snapshot']:.2f}",
            f"{r['cpu_cores']:.2f}", f"{r['achieved_interval_s']:.2f}", f"{r['rss_mb_max']:.0f}",
            str(r["log"]["problem_lines"]),
        )  # fmt: skip
    console.print(table)
    console.print("* the best setting of this build in this run", highlight=False)
    s = res["overload_served_per_symbol"]
    st = res["stop"]
    console.print(
        f"overload: snapshots per symbol over the measured phase min {s['min']}, median "
        f"{s['median']:g}, max {s['max']}; SIGTERM: exit code {st.get('exit_code')} in "
        f"{st.get('exit_s') or 0:.2f} s, problem lines after it {st['log']['problem_lines']}",
        highlight=False,
    )
    console.print(
        "alerts delivered (console channel) over the whole run, per 1,000 snapshots stored: "
        + ", ".join(
            f"{k} {1000 * r['log']['alert_lines'] / max(r['stored_total'], 1):.0f}"
            for k, r in res["rows"].items()
        ),
        highlight=False,
    )
    for name, r in res["rows"].items():
        if r["log"]["first"]:
            console.print(f"{name} log: {r['log']['first']}", highlight=False)
    g = res["goals"]
    console.print(
        f"goals: 2,000 symbols at 1 s >= {g['ratio']:g}x the best setting ({res['best']}): "
        f"{res['ratio_vs_best']:.2f} {_met(g['ratio_met'])} (by CPU per snapshot "
        f"{res['cpu_ratio_vs_best']:.2f}; against each: "
        + ", ".join(f"{k} {v:.2f}" for k, v in res["ratio_vs"].items())
        + f"); zero skip/miss/error lines: {g['problem_lines']} "
        f"{_met(g['problem_lines_met'])}",
        highlight=False,
    )
    if res["overload_demand_per_s"] < best["per_s"]:
        console.print(
            f"the best setting commits more than the overload daemon's whole demand "
            f"({res['overload_demand_per_s']:,.0f}/s), so no build can reach the ratio above "
            f"{res['overload_demand_per_s'] / best['per_s']:.2f} here; against what it can reach, "
            f"min(best, demand): {res['ratio_vs_attainable']:.2f} "
            f"{_met(g['ratio_vs_attainable_met'])}",
            highlight=False,
        )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--symbols", type=int, default=2000)
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--best", default="200,50", help="symbol counts polled as fast as possible")
    ap.add_argument("--window", type=float, default=3.0, help="seconds per measuring window")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--settle", type=float, default=0.5, help="after each resume, unmeasured")
    ap.add_argument("--quick", action="store_true", help="2 rounds of 2 s windows, --best 200")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument(
        "--profile", type=Path, default=None,
        help="cProfile every daemon into DIR/<name>.prof and print CPU per snapshot by stage",
    )  # fmt: skip
    args = ap.parse_args(argv)
    if args.quick:
        args.window = min(args.window, 2.0)
        args.rounds = min(args.rounds, 2)
        if args.best == "200,50":
            args.best = "200"
    args.best = [int(x) for x in args.best.split(",") if x.strip()]
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    res = run(args)
    report(res)
    if args.profile:
        res["profile_ms_per_snapshot"] = print_stages(
            {k: (args.profile / f"{k}.prof", r["stored_total"]) for k, r in res["rows"].items()}
        )
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n")
    return res


if __name__ == "__main__":
    main()
