"""Replay throughput: the rule engine over 100,000 stored 200-strike snapshots.

Builds its own history in a private redis-server (a pipeline of XADDs with the daemon's own
`store.encode_fields`), then times `gex-alertd replay`'s code path (`run_replay`: XRANGE pages,
decode, every rule type) end to end, and each stage on its own in the same run:
  read    XRANGE pages only (redis-py parsing, no decoding)
  decode  `store.decode_fields` on the stored entries (strike block included)
  rules   the engine on already-decoded snapshots (all four rule types)
The synthetic chains drift like a session: spot and flip random-walk (crossing now and then),
net GEX changes sign, effective OI moves at a few strikes per poll with rare large prints.

    python -m bench.bench_replay [--snapshots 100000] [--symbols 10] [--populate-s S]
                                 [--profile] [--quick] [--json out.json]

`--quick` (what `make bench` runs) asks for 8,000 snapshots and stops writing the history after
15 s; the figures say how many were stored and replayed, and in how long.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import logging
import os
import platform
import pstats
import random
import tempfile
import time
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import redis.asyncio as aioredis
import structlog
from rich.console import Console
from rich.table import Table

from gex_alertd import keys, store
from gex_alertd.connections import Fields, entries
from gex_alertd.model import FlowGex, StrikeRow
from gex_alertd.replay import ReplayOptions, run_replay
from gex_alertd.replayer import Replayer
from gex_alertd.rules.base import RuleBase
from gex_alertd.rules.columns import FIELDS, from_block
from gex_alertd.rules.duration import Duration
from gex_alertd.rules.flip_cross import FlipCross
from gex_alertd.rules.net_gex_sign import NetGexSign
from gex_alertd.rules.oi_change import OiChange
from gex_alertd.rules.threshold import Threshold
from tests.support.redis_server import RedisServer

if TYPE_CHECKING:
    from redis.typing import EncodableT, FieldT

T0 = datetime(2026, 5, 11, 13, 30, tzinfo=UTC)
# `--quick` (what `make bench` runs): small enough that writing the history, the part whose
# time grows most with load, fits its budget on a quiet machine; on a busy one the budget cuts
# it short and the rates are measured over what was stored
QUICK_SNAPSHOTS = 8_000
QUICK_POPULATE_S = 15.0
CHUNK = 250  # snapshots per symbol per pipeline; also how often the populate budget is checked

RULES: list[RuleBase] = [
    FlipCross(name="flip", direction="any", band_pct=0.05, cooldown=Duration(600)),
    NetGexSign(name="sign", min_abs=1e8, confirm=2),
    OiChange(name="oi-poll", basis="poll", min_contracts=2000, within_pct=3.0),
    OiChange(name="oi-day", basis="day", min_contracts=5000, min_pct=20),
    Threshold(name="level", field="flip_distance_pct", above=1.0, below=-1.0),
]


def history(symbol: str, n: int, seed: int) -> Any:
    """n snapshots of one symbol, 15 s apart, as FlowGex (generated lazily)."""
    rng = random.Random(seed)
    spot = 100.0 + rng.random() * 400
    step = round(spot / 200, 1) or 0.5
    first = round(spot - 100 * step, 1)
    settled = [
        (float(rng.randrange(100, 40_000)), float(rng.randrange(100, 40_000))) for _ in range(200)
    ]
    call_oi = [c for c, _ in settled]
    put_oi = [p for _, p in settled]
    flip, net = spot * 0.99, 2e9
    day = None
    for i in range(n):
        as_of = T0 + timedelta(seconds=15 * i)
        if as_of.date() != day:  # a new session: OI settles
            day = as_of.date()
            settled = list(zip(call_oi, put_oi, strict=True))
        spot *= 1 + rng.gauss(0, 0.0004)
        flip += rng.gauss(0, spot * 0.0004) + (spot - flip) * 0.002
        net += rng.gauss(0, 2e8) - net * 0.002
        for _ in range(5):  # trading moves effective OI at a few strikes
            j = rng.randrange(200)
            big = rng.random() < 0.002
            call_oi[j] = max(0.0, call_oi[j] + rng.randrange(-50, 60) * (100 if big else 1))
            put_oi[j] = max(0.0, put_oi[j] + rng.randrange(-50, 60) * (100 if big else 1))
        rows = []
        for j in range(200):
            k = round(first + j * step, 2)
            cg = round(call_oi[j] * 1234.5 / (1 + abs(k - spot)), 2)
            pg = -round(put_oi[j] * 1234.5 / (1 + abs(k - spot)), 2)
            rows.append(
                StrikeRow(
                    strike=k, call_gex=cg, put_gex=pg, net_gex=cg + pg,
                    call_oi=call_oi[j], put_oi=put_oi[j],
                    call_volume=float(rng.randrange(0, 5000)),
                    put_volume=float(rng.randrange(0, 5000)),
                    call_oi_change=call_oi[j] - settled[j][0],
                    put_oi_change=put_oi[j] - settled[j][1],
                )
            )  # fmt: skip
        yield FlowGex(
            symbol=symbol,
            as_of=as_of,
            underlying_price=round(spot, 2),
            live_net_gex=round(net, 2),
            live_net_gex_label="positive" if net >= 0 else "negative",
            live_gamma_flip=round(flip, 2),
            gamma_flip_status="available" if rng.random() > 0.05 else "no_boundary",
            strikes=rows,
        )


async def populate(
    redis: aioredis.Redis, symbols: list[str], per_symbol: int, budget_s: float | None
) -> tuple[int, float]:
    """Writes up to per_symbol snapshots per symbol, stopping at budget_s (None: no limit).

    Generating and encoding the history is pure Python and is most of this bench's wall time,
    so on a loaded machine it is what blows a fixed size past the time limit. The symbols are
    filled round-robin, a chunk at a time, so a run cut short by the budget still has every
    symbol at about the same depth; the replay then times whatever was stored (reported).
    """
    started = time.perf_counter()
    deadline = None if budget_s is None else started + budget_s
    pending = [(sym, history(sym, per_symbol, seed=i)) for i, sym in enumerate(symbols)]
    stored = 0
    while pending:
        for entry in list(pending):
            if deadline is not None and time.perf_counter() >= deadline:
                return stored, time.perf_counter() - started
            sym, gen = entry
            pipe = redis.pipeline(transaction=False)
            for snap in islice(gen, CHUNK):
                # XADD is typed for any field types; a dict's types cannot widen without a copy
                fields = cast("dict[FieldT, EncodableT]", store.encode_fields(snap))
                pipe.xadd(keys.snap(sym), fields, id=store.entry_id(snap))
            if len(pipe) < CHUNK:
                pending.remove(entry)
            stored += len(pipe)
            await pipe.execute()
    return stored, time.perf_counter() - started


async def stage_read(redis: aioredis.Redis, symbols: list[str]) -> tuple[int, float, list[Any]]:
    n, started = 0, time.perf_counter()
    sample: list[Fields] = []
    for sym in symbols:
        lo = "-"
        while True:
            batch = entries(await redis.xrange(keys.snap(sym), min=lo, max="+", count=2000))
            n += len(batch)
            if len(sample) < 5000:
                sample += [f for _, f in batch[: 5000 - len(sample)]]
            if len(batch) < 2000:
                break
            lo = "(" + batch[-1][0].decode()
    return n, time.perf_counter() - started, sample


def rate(n: int, secs: float) -> float:
    return n / secs if secs > 0 else float("inf")


async def measure(
    n_total: int, n_symbols: int, profile: bool, populate_s: float | None = None
) -> dict[str, Any]:
    symbols = [f"S{i:02d}" for i in range(n_symbols)]
    per_symbol = n_total // n_symbols
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp), aof=False)
        server.start()
        redis = aioredis.Redis.from_url(server.url)
        try:
            stored, pop_s = await populate(redis, symbols, per_symbol, populate_s)
            read_n, read_s, sample = await stage_read(redis, symbols)

            t = time.perf_counter()
            decoded = [store.decode_fields(f) for f in sample]
            decode_s = time.perf_counter() - t

            # replay's path for column-only rules: the 5 strike columns, no rows
            t = time.perf_counter()
            bare = [  # as replay does: 64 blocks at a time
                x
                for at in range(0, len(sample), 64)
                for x in store.decode_fields_columns_many(sample[at : at + 64], FIELDS)
            ]
            views = [(x[0], from_block(x[1])) for x in bare if isinstance(x, tuple)]
            decode_cols_s = time.perf_counter() - t

            # the engine alone, on one symbol's consecutive decoded snapshots
            replayer = Replayer(RULES)
            t = time.perf_counter()
            for snap in decoded:
                replayer.feed(snap, None)
            rules_s = time.perf_counter() - t
            replayer = Replayer(RULES)
            t = time.perf_counter()
            for snap, view in views:
                replayer.feed(snap, None, view)
            rules_cols_s = time.perf_counter() - t

            quiet = Console(file=io.StringIO())
            full: dict[int, tuple[float, Any]] = {}
            prof = cProfile.Profile() if profile else None
            for jobs in sorted({1, os.cpu_count() or 1}):
                opts = ReplayOptions(
                    rules=RULES,
                    redis_url=server.url,
                    targets=[(s, None) for s in symbols],
                    progress=False,
                    jobs=jobs,
                )
                t = time.perf_counter()
                if prof and jobs == 1:
                    prof.enable()
                stats = await run_replay(opts, quiet, quiet)
                if prof and jobs == 1:
                    prof.disable()
                full[jobs] = (time.perf_counter() - t, stats)
        finally:
            await redis.aclose()
            server.stop()
    top = ""
    if prof:
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(15)
        top = buf.getvalue()
    return {
        "snapshots": stored,
        "symbols": n_symbols,
        "strikes_per_snapshot": 200,
        "rules": [f"{r.name} ({type(r).__struct_config__.tag})" for r in RULES],
        "snapshots_requested": per_symbol * n_symbols,
        "populate_s": round(pop_s, 2),
        "populate_budget_s": populate_s,
        "replay_s": {f"jobs={j}": round(secs, 2) for j, (secs, _) in full.items()},
        "replay_snapshots_per_s": {
            f"jobs={j}": round(rate(st.snapshots, secs)) for j, (secs, st) in full.items()
        },
        "alerts": sum(full[1][1].alerts.values()),
        "suppressed": sum(full[1][1].suppressed.values()),
        "same_alerts_every_jobs": len({tuple(sorted(st.alerts.items())) for _, st in full.values()})
        == 1,
        "stage_read_per_s": round(rate(read_n, read_s)),
        "stage_decode_per_s": round(rate(len(sample), decode_s)),
        "stage_rules_per_s": round(rate(len(decoded), rules_s)),
        "stage_decode_columns_per_s": round(rate(len(sample), decode_cols_s)),
        "stage_rules_columns_per_s": round(rate(len(views), rules_cols_s)),
        "python": platform.python_version(),
        "profile": top,
    }


def main(argv: list[str] | None = None) -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--snapshots", type=int, default=100_000)
    ap.add_argument("--symbols", type=int, default=10)
    ap.add_argument(
        "--populate-s", type=float, default=None,
        help="stop writing the history after this long and replay what was stored",
    )  # fmt: skip
    ap.add_argument("--profile", action="store_true", help="cProfile the full replay")
    ap.add_argument("--json", type=Path)
    ap.add_argument(
        "--quick", action="store_true",
        help=f"{QUICK_SNAPSHOTS:,} snapshots, history written for at most {QUICK_POPULATE_S:g} s",
    )  # fmt: skip
    args = ap.parse_args(argv)
    n, budget = args.snapshots, args.populate_s
    if args.quick:
        n = min(n, QUICK_SNAPSHOTS)
        budget = min(budget or QUICK_POPULATE_S, QUICK_POPULATE_S)
    res = asyncio.run(measure(n, args.symbols, args.profile, budget))
    console = Console()
    table = Table(title=f"replay: {res['snapshots']} snapshots x 200 strikes, {len(RULES)} rules")
    table.add_column("stage")
    table.add_column("snapshots/s", justify="right")
    for jobs, r in res["replay_snapshots_per_s"].items():
        table.add_row(f"full replay (read + decode + rules), {jobs}", f"{r:,}")
    table.add_row("  read (XRANGE pages)", f"{res['stage_read_per_s']:,}")
    table.add_row("  decode rows (store.decode_fields)", f"{res['stage_decode_per_s']:,}")
    table.add_row(
        "  decode columns (store.decode_fields_columns_many)",
        f"{res['stage_decode_columns_per_s']:,}",
    )
    table.add_row("  rules (engine, rows)", f"{res['stage_rules_per_s']:,}")
    table.add_row("  rules (engine, attached columns)", f"{res['stage_rules_columns_per_s']:,}")
    console.print(table)
    console.print(
        f"stored {res['snapshots']:,} of {res['snapshots_requested']:,} snapshots in "
        f"{res['populate_s']:.1f} s (budget {res['populate_budget_s'] or 'none'}); replay took "
        + ", ".join(f"{k} {v:.1f} s" for k, v in res["replay_s"].items())
    )
    console.print(f"alerts {res['alerts']}, suppressed {res['suppressed']}; goal >= 20,000/s")
    if res["profile"]:
        console.print(res["profile"], highlight=False)
    if args.json:
        args.json.write_text(json.dumps({k: v for k, v in res.items() if k != "profile"}, indent=2))


if __name__ == "__main__":
    main()
