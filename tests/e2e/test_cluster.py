"""Three daemons on a real Redis Cluster (3 primaries + 3 replicas): each target polled once per
interval, every alert delivered once, through a SIGKILLed daemon and a SIGKILLed primary.

Real processes on loopback: `gex-alertd run` x3 (one config file each: three members),
`gex-alertd simulate` with a scripted scenario (spot crossing each symbol's level back and
forth), a recording upstream in front of the simulator that counts who polled what and when
(tests/support/polls.py: each daemon has its own API key), and a Standard Webhooks receiver
(tests/reliability/support.py). The alerts expected are what `gex-alertd replay` derives from
the stored streams afterwards: an alert delivered from a snapshot a failover lost would be
delivered yet missing from the history, and one committed twice would be enqueued twice.
Repeats on the wire with the same webhook-id (a delivery whose XACK was lost) are counted and
printed, not asserted: the receiver processes each webhook-id once.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import redis.asyncio as aioredis

from gex_alertd import keys
from gex_alertd.config import RedisConfig
from gex_alertd.connections import connect_config
from gex_alertd.ownership import HEARTBEAT_S, TIMEOUT_S, owner
from tests.reliability.support import (
    API_KEY,
    GEX_ALERTD,
    Proc,
    Receiver,
    assert_stored_once,
    clean_env,
    crossing_scenario,
    daemon_config,
    finish,
    no_tracebacks,
    spawn,
    start_simulator,
)
from tests.support.polls import counts, forwarding, polls, too_close
from tests.support.redis_cluster import RedisCluster
from tests.support.upstream import Upstream
from tests.support.wait import WAIT_S, eventually

SYMBOLS = {"SPY": 600.0, "QQQ": 520.0, "IWM": 220.0, "DIA": 430.0, "TLT": 90.0, "GLD": 240.0}
INTERVAL_S = 1.0
# two polls of one target by two daemons closer than this: polled twice in one interval
MIN_GAP_S = 0.5 * INTERVAL_S
# a dead member's targets move once its entry expired (TIMEOUT_S after its last beat) and the
# others beat (HEARTBEAT_S): 20 s on an idle box; the bound is for a busy one
TAKEOVER_WAIT_S = WAIT_S + 2 * TIMEOUT_S


def redis_yaml(cluster: RedisCluster) -> str:
    return f"{{cluster: {cluster.startup_nodes}, wait_replicas: 1}}"


def redis_config(cluster: RedisCluster) -> RedisConfig:
    return RedisConfig(cluster=cluster.startup_nodes, wait_replicas=1)


@dataclass
class Daemon:
    name: str
    key: str  # its API key: how the upstream tells it apart
    config: Path
    proc: Proc | None = None
    instance: str = ""


@dataclass
class Setup:
    """The run's parts: upstream (recording, in front of the simulator), receiver, daemons."""

    tmp: Path
    cluster: RedisCluster
    up: Upstream
    sim: Proc
    rx: Receiver
    redis: aioredis.Redis  # the cluster client, typed as connect_config types it
    daemons: list[Daemon] = field(default_factory=list)

    def live(self) -> list[Daemon]:
        return [d for d in self.daemons if d.proc is not None and d.proc.alive]

    def owners(self) -> dict[str, str]:
        """symbol -> the API key of its owner among the live daemons (rendezvous hashing)."""
        by_instance = {d.instance: d.key for d in self.live()}
        return {s: by_instance[owner(s, list(by_instance)) or ""] for s in SYMBOLS}

    async def start_daemons(self, names: tuple[str, ...] = ("a", "b", "c")) -> None:
        text = daemon_config(
            self.up.url,
            redis_yaml(self.cluster),
            self.rx,
            list(SYMBOLS),
            SYMBOLS,
            interval_s=INTERVAL_S,
        )
        for name in names:
            home = self.tmp / name
            home.mkdir()
            d = Daemon(name, f"{API_KEY}-{name}", home / "config.yaml")
            # one config file each, as on three hosts: the instance name hashes its path
            d.config.write_text(text.replace(API_KEY, d.key))
            d.proc = await spawn(
                [GEX_ALERTD, "run", "--config", str(d.config), "--no-uvloop"],
                home / "daemon.log", home, clean_env(GEX_ALERTD_CONSUMER=name),
            )  # fmt: skip
            self.daemons.append(d)
        for d in self.daemons:
            assert d.proc is not None
            await d.proc.wait_log("gex-alertd started")
            started = next(e for e in d.proc.events() if e.get("event") == "gex-alertd started")
            d.instance = started["instance"]
        assert len({d.instance for d in self.daemons}) == len(self.daemons)

    async def settled(self) -> None:
        """Until a stretch of polls where every symbol is polled, each by its owner alone."""
        mark = len(self.up.requests)

        def each_by_its_owner() -> bool:
            nonlocal mark
            seen = polls(self.up.requests[mark:])
            if set(seen) != set(SYMBOLS) or any(len(v) < 2 for v in seen.values()):
                return False
            mine = self.owners()
            if all({p.key for p in seen[s]} == {mine[s]} for s in SYMBOLS):
                return True
            mark = len(self.up.requests)  # still handing over: look at a later stretch
            return False

        await eventually(each_by_its_owner, "each symbol polled by its owner alone")

    async def steady_polls(self, per_symbol: int = 8) -> None:
        """Count at the upstream over a stretch in which every symbol is polled `per_symbol`
        times: about once per interval each (at most once, plus the stretch's two ends)."""
        t0 = time.monotonic()
        await eventually(
            lambda: (
                set(polls(self.up.requests)) == set(SYMBOLS)
                and min(counts(self.up.requests, t0, time.monotonic()).values()) >= per_symbol
            ),
            f"{per_symbol} polls of every symbol",
        )
        t1 = time.monotonic()
        expected = (t1 - t0) / INTERVAL_S
        got = counts(self.up.requests, t0, t1)
        print(f"polls per symbol over {t1 - t0:.1f} s at {INTERVAL_S:g} s: {got}")
        for sym, n in got.items():
            # never more than once per interval (a second owner would double it); and polled
            # every interval, not now and then (a generous floor: a busy box delays polls)
            assert n <= expected + 2, (sym, n, expected)
            assert n >= expected / 2, (sym, n, expected)

    async def finish(self) -> list[str]:
        """Freeze the history (stop the simulator), stop the live daemons cleanly, and make
        sure every alert the history implies is delivered; the expected ids."""
        live = [d.proc for d in self.live() if d.proc is not None]
        config = self.daemons[0].config
        return await finish(self.tmp, config, self.sim, live, self.rx, consumer="a")

    async def assert_exactly_once(self, expected: list[str]) -> None:
        accepted = Counter(d.webhook_id for d in self.rx.accepted)
        assert accepted == Counter(expected)  # each expected alert once, no other
        assert self.rx.bad_signatures == 0
        await assert_stored_once(self.redis, SYMBOLS, expected)
        no_tracebacks(self.tmp)
        assert too_close(self.up.requests, MIN_GAP_S) == [], too_close(self.up.requests, MIN_GAP_S)
        print(f"alerts {len(expected)}, wire repeats {sum(self.rx.redeliveries.values())}")


@asynccontextmanager
async def running(tmp: Path, cluster: RedisCluster) -> AsyncIterator[Setup]:
    rx = await Receiver().start()
    sim, sim_url = await start_simulator(
        tmp, crossing_scenario(SYMBOLS, every_s=2, count=1500), list(SYMBOLS)
    )
    redis = connect_config(redis_config(cluster))
    try:
        async with Upstream() as up, forwarding(up, sim_url, API_KEY):
            setup = Setup(tmp, cluster, up, sim, rx, redis)
            try:
                yield setup
            finally:
                for d in setup.daemons:
                    if d.proc is not None:
                        d.proc.kill()
    finally:
        sim.kill()
        await redis.aclose()
        await rx.stop()


async def test_three_daemons_poll_each_target_once_and_deliver_each_alert_once_through_a_sigkill(
    private_cluster: RedisCluster, tmp_path: Path
) -> None:
    """One daemon, then a second and a third join (each join hands targets over without a
    double poll); steady: each target polled about once per interval, at most once; one
    daemon SIGKILLed: its targets move to the others; every alert the history implies
    delivered once. The gap check covers the whole run, joins and take-over included."""
    async with running(tmp_path, private_cluster) as run:
        for name in ("a", "b", "c"):
            await run.start_daemons((name,))
            await run.settled()
        await run.steady_polls()
        await run.rx.wait_more(3)

        # SIGKILL a daemon that owns symbols: the survivors take them once its entry expires
        mine = run.owners()
        victim = next(d for d in run.daemons if d.key in mine.values())
        orphans = {s for s, k in mine.items() if k == victim.key}
        assert victim.proc is not None
        victim.proc.kill()
        await victim.proc.proc.wait()
        killed = time.monotonic()
        mark = len(run.up.requests)

        def taken_over() -> bool:
            seen = polls(run.up.requests[mark:])
            return all(any(p.key != victim.key for p in seen.get(s, [])) for s in orphans)

        await eventually(taken_over, f"{sorted(orphans)} polled by a survivor", TAKEOVER_WAIT_S)
        seen = polls(run.up.requests[mark:])
        moved = max(min(p.at for p in seen[s] if p.key != victim.key) for s in orphans) - killed
        print(
            f"{len(orphans)} targets moved {moved:.1f} s after the SIGKILL "
            f"(heartbeat {HEARTBEAT_S:g} s, timeout {TIMEOUT_S:g} s)"
        )
        await run.settled()
        await run.steady_polls()
        mark_rx = len(run.rx.accepted)
        await eventually(
            lambda: {a.symbol for a in run.rx.accepted[mark_rx:]} >= orphans,
            "alerts of the dead daemon's symbols again",
        )
        expected = await run.finish()
        await run.assert_exactly_once(expected)


async def test_a_primary_sigkilled_under_three_daemons_loses_and_repeats_no_alert_with_wait(
    private_cluster: RedisCluster, tmp_path: Path
) -> None:
    """`redis.wait_replicas: 1`: a commit is acknowledged only once a replica has it, so the
    replica promoted in place of the dead primary has every acknowledged snapshot and alert.
    The primary killed serves the most symbols; until it is back as a replica, WAIT refuses
    commits of its slots (kept pending, committed again)."""
    cluster = private_cluster
    async with running(tmp_path, cluster) as run:
        await run.start_daemons()
        await run.settled()
        await run.rx.wait_more(3)
        serving = Counter(cluster.primary_for(keys.snap(s)).port for s in SYMBOLS)
        primary = next(n for n in cluster.nodes if n.port == serving.most_common(1)[0][0])
        await asyncio.to_thread(cluster.kill_primary, primary)  # SIGKILL, replica promoted
        assert all(d.proc is not None and d.proc.alive for d in run.daemons)
        await asyncio.to_thread(cluster.rejoin, primary)  # WAIT needs a replica again
        mark = len(run.rx.accepted)
        await eventually(
            lambda: {a.symbol for a in run.rx.accepted[mark:]} == set(SYMBOLS),
            "an alert of every symbol after the failover",
        )
        expected = await run.finish()
        await run.assert_exactly_once(expected)
        # the failover was felt: commits refused or failed, kept pending, then stored
        logged = " ".join(
            str(e.get("event")) for d in run.daemons if d.proc for e in d.proc.events()
        )
        assert "snapshot kept pending" in logged
