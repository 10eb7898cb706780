"""Overload holds: 2,000 symbols at interval_s 1, and 2,000 symbols truly overloaded, against
the same build at its best setting.

The goal (issue 12): "2,000 symbols at interval_s 1 commits >= 0.9x what the same build does at
its best setting, with zero skip/miss/error log lines". Its intent: when the watchlist asks for
more than the machine gives, the poll pool serves every target in turn, more slowly, without
throwing throughput away or logging per poll. The bench measures two rows for it:

  - the goal row, literally as the issue states it: 2,000 symbols at `--interval` 1 s. It asks
    for 2,000 commits/s and can never commit more, so once its best setting commits more than
    2,000 / 0.9 = 2,222/s the literal ratio is capped below 0.9 however well the engine holds
    (this build's best does ~2,400-2,700/s on its core). Reported against its best and against
    what it can reach, min(best, 2,000/s), with its achieved interval;
  - the overload row: the same 2,000 symbols at `--overload-interval` 0.25 s (8,000/s wanted,
    several times the best): a real overload whatever the build does. Reported against its
    best (the goal's >= 0.9x), with its achieved interval and its fairness: snapshots per
    symbol over the whole measured phase (min / median / max; every target served in turn
    means min >= 1 and a narrow spread).
"Its best setting" is the same build polling the same watchlist as fast as possible
(`best-2000`): the watchlist is the load under test, the settings are what the build is run
with. A smaller watchlist is cheaper per snapshot whatever the engine does (its streams' data
and the Python heap stay in the core's cache: ~10 % at 200 against 2,000 here, 1.7x at 50 once),
so against it the bar would be set by how few symbols one picks; that ratio, against the
fastest candidate of any size, is printed beside the goal's.

Same run, same build, same upstream, each daemon the real `gex-alertd run` on CPU 1 with a
redis-server of its own (CPU 0, beside the upstream and this process):
  - best: polled as fast as possible (`interval_s` 0.02), one daemon per symbol count of
    `--best 200,50` and one at the rows' own count (`--symbols`, 2,000), always: that one is
    the goal's reference (above); the fastest of them all (by median rate, in practice the
    smallest) is shown beside it. 200 is the issue's first goal's setting; 50 checks how much
    fewer streams gain (1.7x while the committer kept the previous snapshot of only 64 streams
    in memory);
  - goal and overload as above.
All run at once through a warm-up (every symbol stored once), then in interleaved windows:
each daemon resumed (SIGCONT), left `--settle` s, measured for `--window` s, paused (SIGSTOP),
round-robin for `--rounds` rounds, every other round in reverse order (a daemon is not always
the one measured right after another's window). The box is shared: the ratios are taken per
round (a daemon's window against the reference's window of the same round, seconds apart) and
the median of those is reported, beside the ratio of CPU per stored snapshot (the
reference's over the daemon's: how many snapshots one core gives each, which the load barely
moves). The window is
a whole number of goal intervals: after a pause every goal target is overdue, is polled once at
full speed and is due again one interval later, so the goal daemon's rate is periodic with its
interval, and a whole period averages out. Commits are the growth of the snapshot streams
(XLEN, untrimmed); CPU is the daemon's utime + stime over the window.

Settings: the four rules of bench_pipeline on every symbol, `source.requests_per_min`
10,000,000, `max_concurrency` 16 (32 poll workers), `jitter_s` 0, JSON log at warning level,
the live outcome duty off (`outcomes.enabled` false: the best's as_of runs ~20x faster, and
its duty's first run fell in the best's last window).
Problem lines (bench_pipeline.scan_log) over each daemon's whole run, start and stop included:
warning, error and critical lines, any line with "skipped", "missed", "Error running job",
"raised an exception" or "Traceback", and any line that is neither JSON log nor alert. At the
end the goal and the overload daemons are each resumed for a second (into their busy state) and
sent SIGTERM: exit code and wall time to exit, and their log after SIGTERM scanned on its own.

    python -m bench.bench_overload [--symbols 2000] [--interval 1] [--overload-interval 0.25]
                                   [--best 200,50] [--window 1] [--rounds 10] [--settle 0.5]
                                   [--quick] [--json F] [--profile DIR]

`--quick` (what `make bench` runs): 6 rounds, best at 200 symbols (the issue's setting) and at
the rows' own count (50 is the full run's check). `--overload-interval 0` leaves the overload
row out. `--profile DIR` runs every daemon under cProfile (process CPU time) and prints their
CPU per stored snapshot by stage side by side; the rates of a profiled run are not figures.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
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
GOAL, OVERLOAD = "goal", "overload"


def plan_of(args: argparse.Namespace) -> dict[str, tuple[int, float]]:
    """name -> (symbols, interval_s): the best candidates, the goal row, the overload row."""
    out = {f"best-{n}": (n, FAST_INTERVAL_S) for n in args.best}
    out[GOAL] = (args.symbols, args.interval)
    if args.overload_interval > 0:
        out[OVERLOAD] = (args.symbols, args.overload_interval)
    return out


def _rate(w: dict[str, Any]) -> float:
    return float(w["n"]) / w["s"]


def _per_round(rows: list[dict[str, Any]], ref: list[dict[str, Any]]) -> list[float]:
    """A daemon's window against the reference's window of the same round, seconds apart."""
    return [_rate(w) / _rate(b) for w, b in zip(rows, ref, strict=True)]


def _cpu_ms(w: dict[str, Any]) -> float:
    return 1000 * float(w["cpu"]) / max(int(w["n"]), 1)


def _spread(values: list[int]) -> dict[str, float]:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def _sigterm(daemons: list[DaemonProcess], timeout: float = 60.0) -> dict[str, dict[str, Any]]:
    """SIGTERM to each (resumed first), all at once: exit code, seconds to exit (None: killed
    after `timeout`), and the problem lines each logged after the signal."""
    sizes, sent, out = {}, {}, {}
    for d in daemons:
        d.resume()
        sizes[d.name] = d.log_path.stat().st_size
        sent[d.name] = time.monotonic()
        d.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    took: dict[str, float | None] = {}
    while len(took) < len(daemons) and time.monotonic() < deadline:
        for d in daemons:
            if d.name not in took and d.proc.poll() is not None:
                took[d.name] = time.monotonic() - sent[d.name]
        time.sleep(0.01)
    for d in daemons:
        res = d.terminate(5.0)  # kills it if it is still there
        res["exit_s"] = took.get(d.name)
        with d.log_path.open("rb") as f:
            f.seek(sizes[d.name])
            res["log"] = scan_log(f.read().decode(errors="replace"))
        out[d.name] = res
    return out


def _stop_check(
    trees: dict[str, dict[str, Any]], tmp: Path, busy_s: float = 1.0
) -> dict[str, dict[str, Any]]:
    """SIGTERM with thousands of targets queued, on daemons that were never paused: each
    setting started again on its Redis (its streams and rule state kept: a restart), run
    until it has stored one snapshot per symbol more and `busy_s` after that, then stopped.
    (The measured daemons are not the ones to judge the stop by: after SIGSTOP/SIGCONT cycles
    their stop took 2-26 s here until 2026-11-30, when the stop waited for the outcome duty's
    run over every alert of the paused phase while polls went on; see bench/README.md,
    overload.) The whole log of each run is scanned."""
    daemons = {k: DaemonProcess(f"{k}-stop", t, tmp) for k, t in trees.items()}
    try:
        wanted = {k: d.stored() + len(d.symbols) for k, d in daemons.items()}
        deadline = time.monotonic() + WARM_UP_S
        while any(d.stored() < wanted[k] for k, d in daemons.items()):
            for d in daemons.values():
                d.check()
            if time.monotonic() > deadline:
                raise RuntimeError("stop check: a daemon did not poll every symbol again")
            time.sleep(0.2)
        time.sleep(busy_s)
        stopped = _sigterm(list(daemons.values()))
    finally:
        for d in daemons.values():
            d.terminate(5.0)
    out = {}
    for k, d in daemons.items():
        out[k] = stopped[d.name]
        out[k]["whole_log"] = d.log()
    return out


def measure(args: argparse.Namespace, plan: dict[str, tuple[int, float]]) -> dict[str, Any]:
    """Every daemon of `plan` through warm-up, the interleaved windows and the stop."""
    windows: dict[str, list[dict[str, Any]]] = {k: [] for k in plan}
    out: dict[str, Any] = {"windows": windows, "served": {}}
    with tempfile.TemporaryDirectory(prefix="gex-bench-overload-") as tmp_name:
        tmp = Path(tmp_name)
        up, base_url = start_upstream(max(n for n, _ in plan.values()))
        servers: list[RedisServer] = []
        daemons: dict[str, DaemonProcess] = {}
        trees: dict[str, dict[str, Any]] = {}
        try:
            for name, (n, interval) in plan.items():
                servers.append(start_redis(tmp / f"redis-{name}"))
                # a key each: one daemon's polls do not advance the as_of another sees (the
                # best's fast polls made the first 200 symbols' as_of jump ~20 s between two
                # polls of the overload daemon, so its 1 m cooldowns ran out ~2x as often)
                # no outcome duty: the replay upstream advances a symbol's as_of by 1 s a
                # poll, so the best's as_of runs ~20x faster than the others' and its duty's
                # first run (30 s in, over horizons that elapsed in as_of) took half of the
                # best's last window in every run: a per-round ratio of 3.5-4 that lifted the
                # median (bench/README, overload, 2026-11-30 15:20)
                trees[name] = config_tree(
                    servers[-1].url, base_url, symbol_names(n), interval, max_len=None,
                    api_key=f"bench-key-{name}", outcomes=False,
                )  # fmt: skip
                prof = args.profile / f"{name}.prof" if args.profile else None
                daemons[name] = DaemonProcess(name, trees[name], tmp, profile=prof)
            out["covered"] = {n: d.warm_up(WARM_UP_S, then_s=0) for n, d in daemons.items()}
            time.sleep(1.0)
            for d in daemons.values():
                d.pause()
            watched = [k for k in (GOAL, OVERLOAD) if k in daemons]
            before = {k: daemons[k].lengths() for k in watched}
            order = list(daemons)
            for i in range(args.rounds):
                for name in order if i % 2 == 0 else order[::-1]:
                    windows[name].append(daemons[name].window(args.window, args.settle))
            for k in watched:
                after = daemons[k].lengths()
                out["served"][k] = [b - a for a, b in zip(before[k], after, strict=True)]
            out["totals"] = {name: d.stored() for name, d in daemons.items()}
            # problem lines up to here: the stop after pause cycles is reported apart
            out["logs"] = {name: d.log() for name, d in daemons.items()}
            if args.quick and not args.profile:  # its time is the stop check's (a profiled
                # daemon writes its profile when it exits on SIGTERM)
                out["stop_after_pauses"] = {}
                for d in daemons.values():
                    d.proc.kill()
                    d.proc.wait(10)
            else:
                out["stop_after_pauses"] = _sigterm([daemons[k] for k in watched])
            for d in daemons.values():
                d.terminate()
            out["stop"] = {} if args.profile else _stop_check({k: trees[k] for k in watched}, tmp)
        finally:
            for d in daemons.values():
                d.terminate()
            stop(up)
            for s in servers:
                s.stop()
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    pin(0)  # the bench only counts; CPU 1 is the daemons'
    plan = plan_of(args)
    m = measure(args, plan)
    windows = m["windows"]
    rows: dict[str, dict[str, Any]] = {}
    for name, (n, interval) in plan.items():
        row = summary(windows[name])
        row.update(symbols=n, interval_s=interval, log=m["logs"][name])
        row.update(stored_total=m["totals"][name], demand_per_s=n / interval)
        row["startup_to_full_coverage_s"] = m["covered"][name]
        row["achieved_interval_s"] = n / row["per_s"] if row["per_s"] else None
        rows[name] = row
    bests = [k for k in rows if k.startswith("best-")]
    best_name = max(bests, key=lambda k: rows[k]["per_s"])
    for name in (GOAL, OVERLOAD):
        if name not in rows:
            continue
        row = rows[name]
        # the goal's reference: the same build at its best setting for the same watchlist,
        # polled as fast as possible (a smaller watchlist is cheaper per snapshot whatever
        # the engine does: with it as the reference the bar would be set by how few symbols
        # one picks, bench/README.md); the fastest candidate of any size is shown beside it
        own = f"best-{row['symbols']}"
        ref = rows[own]
        row["own_best"] = own
        per_round = _per_round(windows[name], windows[own])
        row["x_own_per_round"] = [round(x, 3) for x in per_round]
        row["x_own"] = statistics.median(per_round)
        row["x_own_of_medians"] = row["per_s"] / ref["per_s"]
        row["x_own_cpu"] = ref["cpu_ms_per_snapshot"] / row["cpu_ms_per_snapshot"]
        # what it can reach: no more than its demand, no more than its best
        row["attainable_per_s"] = min(ref["per_s"], row["demand_per_s"])
        row["x_attainable"] = statistics.median(
            _rate(w) / min(_rate(b), row["demand_per_s"])
            for w, b in zip(windows[name], windows[own], strict=True)
        )
        fastest = rows[best_name]
        row["x_fastest"] = statistics.median(_per_round(windows[name], windows[best_name]))
        row["x_fastest_cpu"] = fastest["cpu_ms_per_snapshot"] / row["cpu_ms_per_snapshot"]
        row["x_each"] = {k: row["per_s"] / rows[k]["per_s"] for k in bests}
        row["served_per_symbol"] = _spread(m["served"][name])
        row["every_target_served"] = min(m["served"][name]) >= 1
        row["stop"] = m["stop"].get(name, {})
        row["stop_after_pauses"] = m["stop_after_pauses"].get(name, {})
        problems = row["log"]["problem_lines"]
        row["goals"] = {
            "ratio": GOAL_RATIO, "ratio_met": row["x_own"] >= GOAL_RATIO,
            "ratio_vs_attainable_met": row["x_attainable"] >= GOAL_RATIO,
            "problem_lines": problems, "problem_lines_met": problems == 0,
            "sigterm_ok": bool(row["stop"]) and row["stop"].get("exit_code") == 0
            and row["stop"]["log"]["problem_lines"] == 0,
        }  # fmt: skip
    return {
        "rows": rows,
        "best": best_name,
        "params": {
            "window_s": args.window,
            "rounds": args.rounds,
            "settle_s": args.settle,
            "requests_per_min": REQUESTS_PER_MIN,
            "max_concurrency": 16,
            "poll_workers": 32,
            "jitter_s": 0.0,
            "strikes": 200,
            "cpus": os.cpu_count(),
        },
    }


def _met(ok: bool) -> str:
    return "[green]met[/]" if ok else "[red]not met[/]"


def _label(name: str, r: dict[str, Any]) -> str:
    what = {GOAL: "goal", OVERLOAD: "overload"}.get(name, "best")
    return f"{what} {r['symbols']:,} @ {r['interval_s']:g} s"


def _exit(st: dict[str, Any]) -> str:
    took = st.get("exit_s")
    when = f"in {took:.2f} s" if took is not None else "(killed)"
    problems = st["log"]["problem_lines"]
    return f"exit code {st.get('exit_code')} {when}, problem lines after it {problems}"


def _stop_text(r: dict[str, Any]) -> str:
    if not r["stop"]:
        return "SIGTERM: not checked (profiled run)"
    text = f"SIGTERM ({r['symbols']:,} targets queued, never paused): " + _exit(r["stop"])
    text += f" {_met(r['goals']['sigterm_ok'])}"
    if r.get("stop_after_pauses"):
        text += f" (the measured daemon, after its pause cycles: {_exit(r['stop_after_pauses'])})"
    return text


def report(res: dict[str, Any]) -> None:
    console = Console(width=170)
    p = res["params"]
    table = Table(
        title=f"overload: gex-alertd run, 200 strikes, 4 rules/symbol, {p['rounds']} interleaved "
        f"windows of {p['window_s']:g} s per daemon (ratios: median of per-round ratios)"
    )
    cols = ("daemon", "wanted/s", "snapshots/s", "x own best", "x own best by CPU",
            "x min(own best, wanted)", "x fastest", "CPU ms/snap", "cores", "achieved interval s",
            "per symbol min/med/max", "RSS MB", "problem lines")  # fmt: skip
    for col in cols:
        table.add_column(col, justify="left" if col == "daemon" else "right")
    fastest = res["rows"][res["best"]]
    for name, r in res["rows"].items():
        mark = " *" if name == res["best"] else ""
        cells = [_label(name, r) + mark, f"{r['demand_per_s']:,.0f}", f"{r['per_s']:,.0f}"]
        if "x_own" in r:
            s = r["served_per_symbol"]
            cells += [f"{r['x_own']:.2f}", f"{r['x_own_cpu']:.2f}", f"{r['x_attainable']:.2f}",
                      f"{r['x_fastest']:.2f}"]  # fmt: skip
            served = f"{s['min']}/{s['median']:g}/{s['max']}"
        else:
            cells += ["", "", "", f"{r['per_s'] / fastest['per_s']:.2f}"]
            served = ""
        cells += [f"{r['cpu_ms_per_snapshot']:.2f}", f"{r['cpu_cores']:.2f}",
                  f"{r['achieved_interval_s']:.2f}", served, f"{r['rss_mb_max']:.0f}",
                  str(r["log"]["problem_lines"])]  # fmt: skip
        table.add_row(*cells)
    console.print(table)
    console.print(
        "own best: the same symbols polled as fast as possible (the goal's reference); fastest: "
        "the candidate of any size with the highest rate (*). per symbol: snapshots stored per "
        "symbol over the whole measured phase (every window and pause of every daemon)",
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
    for name in (GOAL, OVERLOAD):
        r = res["rows"].get(name)
        if r is None:
            continue
        g = r["goals"]
        head = {GOAL: "THE LITERAL GOAL", OVERLOAD: "THE REAL OVERLOAD"}[name]
        own = res["rows"][r["own_best"]]
        text = (
            f"{head}, {r['symbols']:,} symbols at {r['interval_s']:g} s "
            f"({r['demand_per_s']:,.0f}/s wanted, {r['demand_per_s'] / own['per_s']:.1f}x its "
            f"best): >= {g['ratio']:g}x the same build at its best setting for these symbols "
            f"({r['own_best']}, polled as fast as possible): {r['x_own']:.2f} "
            f"{_met(g['ratio_met'])} (per round "
            f"{', '.join(f'{x:.2f}' for x in r['x_own_per_round'])}; by CPU per snapshot "
            f"{r['x_own_cpu']:.2f}); against min(that, wanted) {r['x_attainable']:.2f} "
            f"{_met(g['ratio_vs_attainable_met'])}; against the fastest watchlist measured "
            f"({res['best']}; fewer streams cost less per snapshot): {r['x_fastest']:.2f} (by CPU "
            f"{r['x_fastest_cpu']:.2f}; each candidate: "
            + ", ".join(f"{k} {v:.2f}" for k, v in r["x_each"].items())
            + f"); achieved interval {r['achieved_interval_s']:.2f} s; every target served: "
            f"{'yes' if r['every_target_served'] else 'NO'}; zero skip/miss/error lines: "
            f"{g['problem_lines']} {_met(g['problem_lines_met'])}; " + _stop_text(r)
        )  # fmt: skip
        console.print(text, highlight=False)
    goal = res["rows"].get(GOAL)
    if goal is not None:
        ref = res["rows"][goal["own_best"]]["per_s"]
        if goal["demand_per_s"] < ref * GOAL_RATIO:
            console.print(
                f"(the goal row wants {goal['demand_per_s']:,.0f}/s, less than 0.9x its best: "
                "its literal ratio measures the demand, not the engine; the overload row is the "
                "test of the goal's intent)",
                highlight=False,
            )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--symbols", type=int, default=2000)
    ap.add_argument("--interval", type=float, default=1.0, help="the goal row's interval")
    ap.add_argument(
        "--overload-interval", type=float, default=0.25,
        help="the overload row's interval (same symbols; 0: no overload row)",
    )  # fmt: skip
    ap.add_argument("--best", default="200,50", help="symbol counts polled as fast as possible")
    ap.add_argument(
        "--window", type=float, default=1.0,
        help="seconds per measuring window (a whole number of goal intervals)",
    )  # fmt: skip
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--settle", type=float, default=0.5, help="after each resume, unmeasured")
    ap.add_argument("--quick", action="store_true", help="6 rounds, --best 200 (and --symbols)")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument(
        "--profile", type=Path, default=None,
        help="cProfile every daemon into DIR/<name>.prof and print CPU per snapshot by stage",
    )  # fmt: skip
    args = ap.parse_args(argv)
    if args.quick:
        args.rounds = min(args.rounds, 6)
        if args.best == "200,50":
            args.best = "200"
    args.best = [int(x) for x in args.best.split(",") if x.strip()]
    if args.symbols not in args.best:  # the rows' own watchlist at its best: always measured
        args.best.append(args.symbols)
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
