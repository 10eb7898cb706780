"""Primary failovers under a committing load: snapshots and alerts lost or duplicated, with and
without `WAIT` after each commit batch (redis.wait_replicas).

A real Sentinel set (a primary, a replica, three sentinels; tests/support/redis_cluster.py) and
the daemon's own Committer (the atomic commit script, batched) over redis-py's Sentinel client,
as `connect_config` builds it. Several symbols commit their 200-strike histories as fast as
Redis takes them, each one snapshot at a time and keeping a snapshot pending until a commit
of it is acknowledged (what the poller does). Meanwhile the primary is SIGKILLed, the sentinels
promote the replica, and the dead node restarts empty and rejoins as the new replica; that is
one failover. The same on a real Redis Cluster (3 primaries + 3 replicas, redis-py's cluster
client; `--on cluster`): each failover kills the primary serving the next symbol in turn, its
replica is promoted by the cluster (node timeout 2 s) and the dead node rejoins as a replica.
Afterwards the surviving data is compared with what the committers were told:

  - lost snapshots: acknowledged commits whose entry is missing from the final stream;
  - lost alerts: alert ids a commit returned as enqueued, missing from the final outboxes;
  - duplicated alerts: an alert id more than once in the outboxes.

Without WAIT a loss needs the kill to land between a commit's reply and its replication (well
under a millisecond on loopback), so small counts are expected and vary run to run; the bench
reports what it saw. So each mode runs twice: as is, and with the replica cut off for LAG_S
before the kill (frozen, its link closed by the primary; redis_cluster.cut_off), as in a
network partition at the moment of death. Failover time: from the kill to the first commit
acknowledged after it (sentinel down-after 1 s, cluster node timeout 2 s; with WAIT, also until
the dead node is back as a replica: no replica, no acknowledged commit of its slots).

    python -m bench.bench_failover [--failovers 10] [--symbols 4] [--on sentinel,cluster]
                                   [--quick] [--json PATH]

`--quick` (what `make bench` runs): 1 failover per mode, in the cut-off scenario only (the one
where the modes differ; with the link up neither lost anything in any run so far).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import structlog
from rich.console import Console
from rich.table import Table

from bench.bench_replay import RULES, history
from gex_alertd import keys
from gex_alertd.commit import Committer
from gex_alertd.config import RedisConfig, SentinelConfig
from gex_alertd.connections import REDIS_DOWN, connect_config, entries
from tests.support.redis_cluster import RedisCluster, SentinelSet

QUICK_FAILOVERS = 1
# the second scenario: the replica cut off this long before the primary's death (it misses what
# the primary acknowledged meanwhile: where asynchronous replication loses)
LAG_S = 0.5
SNAPSHOTS_PER_SYMBOL = 100_000  # more than any run commits: the load never runs out
SETTLE_S = 1.0  # committing between failovers, so every failover hits a busy primary


class Load:
    """Committers that keep going through failovers, recording what Redis acknowledged."""

    def __init__(self, committer: Committer, symbols: list[str]) -> None:
        self.committer = committer
        self.symbols = symbols
        self.acked: dict[str, list[int]] = {s: [] for s in symbols}
        self.alerts: list[str] = []
        self.last_ack = 0.0
        self.failed = 0
        self.stop = asyncio.Event()

    async def run_symbol(self, symbol: str, seed: int) -> None:
        from redis.exceptions import RedisError

        from gex_alertd.commit import CommitConflict

        for snap in history(symbol, SNAPSHOTS_PER_SYMBOL, seed=seed):
            while not self.stop.is_set():
                try:
                    res = await self.committer.commit(snap, None)
                except (*REDIS_DOWN, RedisError, CommitConflict):
                    self.failed += 1
                    await asyncio.sleep(0.05)  # the poller's backoff, shortened
                    continue
                self.acked[symbol].append(snap.as_of_ms)
                self.alerts.extend(e.id for e in res.alerts)
                self.last_ack = time.monotonic()
                break
            if self.stop.is_set():
                return


def fail_over(server: SentinelSet | RedisCluster, lag_s: float, key: str) -> None:
    """SIGKILL the primary (on a cluster: the one serving `key`), wait for its replica's
    promotion, and bring the dead node back as the new replica."""
    if isinstance(server, RedisCluster):
        primary = server.primary_for(key)
        server.kill_primary(primary, lag_s)
        server.rejoin(primary)
    else:
        server.kill_primary(lag_s)
        server.rejoin()


async def one_mode(
    wait: bool, lag_s: float, failovers: int, n_symbols: int, seed: int, on: str = "sentinel"
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        server: SentinelSet | RedisCluster
        if on == "cluster":
            server = RedisCluster(Path(tmp))
            server.start()
            rc = RedisConfig(
                cluster=server.startup_nodes, retention=None, wait_replicas=1 if wait else 0
            )
        else:
            server = SentinelSet(Path(tmp))
            server.start()
            rc = RedisConfig(
                sentinel=SentinelConfig(master=server.master_name, nodes=server.sentinel_nodes),
                retention=None,
                wait_replicas=1 if wait else 0,
            )
        redis = connect_config(rc, client_name="bench-failover")
        symbols = [f"S{i:02d}" for i in range(n_symbols)]
        load = Load(Committer(redis, RULES, rc), symbols)
        tasks = [asyncio.create_task(load.run_symbol(s, i)) for i, s in enumerate(symbols)]
        rng = random.Random(seed)
        takes: list[float] = []
        try:
            for i in range(failovers):
                await asyncio.sleep(SETTLE_S + rng.random())
                killed = time.monotonic() + lag_s  # kill_primary cuts the replica off first
                key = keys.snap(symbols[i % len(symbols)])  # a cluster: each symbol's in turn
                await asyncio.to_thread(fail_over, server, lag_s, key)
                # the first acknowledged commit after the kill (a bench: polling is fine)
                while load.last_ack < killed:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
                takes.append(load.last_ack - killed)
            await asyncio.sleep(SETTLE_S)
            load.stop.set()
            await asyncio.gather(*tasks)
            await load.committer.drain()
            lost_snaps = 0
            stored = 0
            for s in symbols:
                have = {
                    int(eid.split(b"-")[0]) for eid, _ in entries(await redis.xrange(keys.snap(s)))
                }
                stored += len(have)
                lost_snaps += sum(1 for ms in load.acked[s] if ms not in have)
            outbox: Counter[str] = Counter()
            for s in symbols:
                got = entries(await redis.xrange(keys.outbox(s)))
                outbox.update(f[b"id"].decode() for _, f in got)
        finally:
            load.stop.set()
            for t in tasks:
                t.cancel()
            await redis.aclose()
            server.stop()
    return {
        "redis": on,
        "wait": "WAIT 1" if wait else "off",
        "replica_lag_s": lag_s,
        "failovers": failovers,
        "acked_snapshots": sum(len(v) for v in load.acked.values()),
        "stored_snapshots": stored,
        "lost_snapshots": lost_snaps,
        "acked_alerts": len(load.alerts),
        "lost_alerts": sum(1 for a in set(load.alerts) if a not in outbox),
        "duplicated_alerts": sum(n - 1 for n in outbox.values() if n > 1),
        "failed_attempts": load.failed,
        "failover_s_median": round(sorted(takes)[len(takes) // 2], 2) if takes else None,
        "failover_s_max": round(max(takes), 2) if takes else None,
    }


def main(argv: list[str] | None = None) -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--failovers", type=int, default=10)
    ap.add_argument("--symbols", type=int, default=4)
    ap.add_argument("--seed", type=int, default=15)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--on", default="sentinel,cluster", help="sentinel, cluster or both")
    ap.add_argument("--quick", action="store_true", help=f"{QUICK_FAILOVERS} failovers per mode")
    args = ap.parse_args(argv)
    n = min(args.failovers, QUICK_FAILOVERS) if args.quick else args.failovers
    results = []
    for on in [x.strip() for x in args.on.split(",") if x.strip()]:
        for lag in (LAG_S,) if args.quick else (0.0, LAG_S):
            for wait in (True, False):
                t = time.monotonic()
                results.append(asyncio.run(one_mode(wait, lag, n, args.symbols, args.seed, on)))
                results[-1]["wall_s"] = round(time.monotonic() - t, 1)
    table = Table(title=f"{n} primary failovers under {args.symbols} committing symbols")
    cols = ("redis", "WAIT", "replica cut off s", "acked snaps", "lost snaps", "acked alerts",
            "lost alerts", "dup alerts", "failed tries", "failover median s", "max s",
            "wall s")  # fmt: skip
    for col in cols:
        table.add_column(col, justify="right")
    for r in results:
        table.add_row(
            r["redis"], r["wait"], str(r["replica_lag_s"]), str(r["acked_snapshots"]),
            str(r["lost_snapshots"]),
            str(r["acked_alerts"]), str(r["lost_alerts"]), str(r["duplicated_alerts"]),
            str(r["failed_attempts"]), str(r["failover_s_median"]), str(r["failover_s_max"]),
            str(r["wall_s"]),
        )  # fmt: skip
    Console(width=160).print(table)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
