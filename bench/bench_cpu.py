"""CPU per stored snapshot on the live path, without I/O: decode+validate, rules, encode.

What the daemon does in Python between an HTTP body arriving and the Lua commit being sent,
per snapshot, stage by stage, each timed around the daemon's own call:
  decode   `model.decode_flow_gex(body, symbol=...)` (typed decode, validation, the strike
           matrix the later stages share)
  rules    `Engine.evaluate(slots, snap, prev, expiry)` with the pipeline bench's four rules
           (flip_cross, net_gex_sign, threshold, oi_change basis poll against the previous
           snapshot, kept as the committer keeps it: rows dropped, column view kept)
  encode   `store.encode_fields(snap)` (scalars + the zstd strike block) and the rule state
           (`Engine.encode_slot`), i.e. what the commit script is sent
Baseline, same run, same bodies, interleaved: a bare `msgspec.json.decode(body)` (untyped),
the work of the pipeline bench's fetch ceiling. Bodies are the simulator's 200-strike chains
(`bench.replay_upstream.Bodies`: a few consecutive ticks, a new `as_of` for every snapshot).

    python -m bench.bench_cpu [--snapshots 6000] [--strikes 200] [--profile [N]] [--quick]
                              [--json F]

`--quick` (what `make bench` runs): 2,000 snapshots (a few seconds). `--profile N` adds a
cProfile of the three stages over the same number of snapshots and prints its top N entries by
own time (the profiled run is ~2x slower; its shares, not its times, are the point).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import pstats
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from types import GenericAlias
from typing import Any

import msgspec
from rich.console import Console
from rich.table import Table

from bench.bench_pipeline import RULES as RULE_TREE
from bench.replay_upstream import Bodies
from gex_alertd import store
from gex_alertd.model import FlowGex, decode_flow_gex
from gex_alertd.rules.base import RuleBase
from gex_alertd.rules.columns import detached
from gex_alertd.rules.engine import Engine, RuleSlot
from gex_alertd.rules.registry import columns_only, rule_config_union
from gex_alertd.typedconfig import Problems, convert

SYMBOL = "SPY"
QUICK_SNAPSHOTS = 2000
WARMUP = 50
STAGES = ("decode", "rules", "encode")


def rules() -> list[RuleBase]:
    problems = Problems()
    out = convert(RULE_TREE, GenericAlias(list, rule_config_union()), "rules", problems)
    if problems or out is None:
        raise RuntimeError(f"bench rules do not load: {problems}")
    return list(out)


def bodies(n: int, strikes: int, ticks: int = 8) -> Iterator[bytes]:
    source = Bodies([SYMBOL], ticks, strikes, 1)
    for _ in range(n):
        body = source.next(SYMBOL)
        assert body is not None
        yield body


class Live:
    """The per-snapshot work of `Committer.commit` without Redis: state and the previous
    snapshot are carried from one snapshot to the next as the committer keeps them."""

    def __init__(self) -> None:
        self.engine = Engine(rules())
        self.slots: dict[str, RuleSlot] = {}
        self.prev: FlowGex | None = None
        self.columns_only = columns_only(self.engine.rules)

    def decode(self, body: bytes) -> FlowGex:
        return decode_flow_gex(body, symbol=SYMBOL)

    def rules(self, snap: FlowGex) -> Any:
        return self.engine.evaluate(self.slots, snap, self.prev, None)

    def encode(self, snap: FlowGex, outcome: Any) -> int:
        fields = store.encode_fields(snap)
        state = [self.engine.encode_slot(s) for s in outcome.slots.values()]
        self.slots = {**self.slots, **outcome.slots}
        self.prev = detached(snap) if self.columns_only else snap
        return len(fields[store.F_STRIKES]) + sum(map(len, state))


def measure(n: int, strikes: int) -> dict[str, Any]:
    live = Live()
    times: dict[str, list[float]] = {s: [] for s in ("baseline", *STAGES)}
    clock = time.perf_counter
    emitted = block_bytes = 0
    cpu = 0.0
    for i, body in enumerate(bodies(n + WARMUP, strikes)):
        t0 = clock()
        msgspec.json.decode(body)
        t1 = clock()
        c0 = time.process_time()
        t2 = clock()
        snap = live.decode(body)
        t3 = clock()
        outcome = live.rules(snap)
        t4 = clock()
        size = live.encode(snap, outcome)
        t5 = clock()
        c1 = time.process_time()
        if i < WARMUP:
            continue
        cpu += c1 - c0
        emitted += len(outcome.emitted)
        block_bytes += size
        for name, dt in zip(times, (t1 - t0, t3 - t2, t4 - t3, t5 - t4), strict=True):
            times[name].append(dt)
    totals = [sum(x) for x in zip(*(times[s] for s in STAGES), strict=True)]
    out: dict[str, Any] = {"snapshots": n, "strikes": strikes, "rule_count": len(live.engine.rules)}
    for name, samples in [*times.items(), ("total", totals)]:
        out[name] = {
            "median_us": round(statistics.median(samples) * 1e6, 1),
            "mean_us": round(statistics.fmean(samples) * 1e6, 1),
        }
    out["process_cpu_us_per_snapshot"] = round(cpu / n * 1e6, 1)
    out["alerts"] = emitted
    out["stored_bytes_per_snapshot"] = round(block_bytes / n)
    return out


def profile(n: int, strikes: int, top: int) -> str:
    live = Live()
    work = list(bodies(min(n, 2000), strikes))
    prof = cProfile.Profile()
    gc.collect()
    prof.enable()
    for body in work:
        snap = live.decode(body)
        live.encode(snap, live.rules(snap))
    prof.disable()
    buf = io.StringIO()
    stats = pstats.Stats(prof, stream=buf)
    stats.strip_dirs().sort_stats("tottime").print_stats(top)
    return buf.getvalue()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--snapshots", type=int, default=6000)
    ap.add_argument("--strikes", type=int, default=200)
    ap.add_argument("--profile", type=int, nargs="?", const=25, default=0, metavar="TOP")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--quick", action="store_true", help=f"{QUICK_SNAPSHOTS} snapshots")
    args = ap.parse_args(argv)
    n = min(args.snapshots, QUICK_SNAPSHOTS) if args.quick else args.snapshots
    res = measure(n, args.strikes)
    base = res["baseline"]["median_us"]
    table = Table(
        title=f"CPU per snapshot: {res['snapshots']} x {res['strikes']} strikes, "
        f"{res['rule_count']} rules (baseline: bare msgspec.json.decode of the same body)"
    )
    for col in ("stage", "median", "mean", "x baseline (median)"):
        table.add_column(col, justify="right")
    for name in ("baseline", *STAGES, "total"):
        r = res[name]
        table.add_row(
            name, f"{r['median_us']} us", f"{r['mean_us']} us", f"{r['median_us'] / base:.2f}"
        )
    console = Console()
    console.print(table)
    console.print(
        f"process CPU over the three stages: {res['process_cpu_us_per_snapshot']} us/snapshot "
        f"(GC included); alerts {res['alerts']}; "
        f"stored block + state {res['stored_bytes_per_snapshot']} B/snapshot"
    )
    if args.profile:
        text = profile(n, args.strikes, args.profile)
        res["profile_top"] = text
        console.print(text, markup=False, highlight=False)
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
