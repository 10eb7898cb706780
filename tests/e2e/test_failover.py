"""A Redis primary's death under running daemons (Sentinel: a primary, a replica, three
sentinels): the daemons follow the promoted replica, and with WAIT (on by default with
Sentinel) no acknowledged snapshot or alert is lost and none is delivered twice; with three
daemons, one SIGKILLed first, its targets and its deliveries move to the others.

The real `gex-alertd run` against `gex-alertd simulate` and a real webhook receiver; the
alerts expected are what `gex-alertd replay` derives from the stored streams afterwards (see
tests/reliability/test_crashes.py): an alert delivered from a snapshot the failover lost would
be delivered yet missing from the history, and one committed twice would be enqueued twice.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

from gex_alertd.config import RedisConfig, SentinelConfig
from gex_alertd.connections import connect_config
from gex_alertd.ownership import owner
from tests.reliability.support import (
    GEX_ALERTD,
    Proc,
    Receiver,
    assert_enqueued_once,
    assert_stored_once,
    clean_env,
    crossing_scenario,
    daemon_config,
    finish,
    no_tracebacks,
    spawn,
    start_daemon,
    start_simulator,
)
from tests.support.redis_cluster import SentinelSet
from tests.support.wait import WAIT_S, eventually

SYMBOLS = {"SPY": 600.0, "QQQ": 520.0}
FAILOVERS = 2


def sentinel_yaml(sentinels: SentinelSet) -> str:
    return f"{{sentinel: {{master: {sentinels.master_name}, nodes: {sentinels.sentinel_nodes}}}}}"


def sentinel_config(sentinels: SentinelSet) -> RedisConfig:
    return RedisConfig(
        sentinel=SentinelConfig(master=sentinels.master_name, nodes=sentinels.sentinel_nodes)
    )


async def test_the_daemon_follows_sentinel_failovers_losing_and_repeating_nothing(
    sentinel_set: SentinelSet, tmp_path: Path
) -> None:
    rx = await Receiver().start()
    sim, base_url = await start_simulator(
        tmp_path, crossing_scenario(SYMBOLS, every_s=2, count=3000), list(SYMBOLS)
    )
    config = tmp_path / "config.yaml"
    config.write_text(
        daemon_config(base_url, sentinel_yaml(sentinel_set), rx, list(SYMBOLS), SYMBOLS)
    )
    rc = sentinel_config(sentinel_set)
    redis = connect_config(rc)
    daemon = await start_daemon(tmp_path, config)
    try:
        await daemon.wait_log("gex-alertd started")
        for _ in range(FAILOVERS):
            await rx.wait_more(3)  # alive and delivering
            await asyncio.to_thread(sentinel_set.kill_primary)  # SIGKILL, replica promoted
            assert daemon.alive, daemon.output()[-3000:]
            await asyncio.to_thread(sentinel_set.rejoin)  # WAIT needs a replica again
        await rx.wait_more(3)  # following the new primary: storing and delivering
        assert daemon.alive
        expected = await finish(tmp_path, config, sim, [daemon], rx)

        accepted = [d.webhook_id for d in rx.accepted]
        assert Counter(accepted) == Counter(expected)  # each expected alert once, no other
        await assert_stored_once(redis, SYMBOLS, expected)
        no_tracebacks(tmp_path)
        # the failovers were felt: commits refused or failed, kept pending, then stored
        logged = " ".join(str(e.get("event")) for e in daemon.events())
        assert "snapshot kept pending" in logged, daemon.output()[-3000:]
        # a delivery whose XACK the dead primary had not replicated is sent again with the same
        # webhook-id (the receiver drops it): at-least-once on the wire, once for the receiver
        print(f"alerts {len(expected)}, wire repeats {sum(rx.redeliveries.values())}")
    finally:
        await redis.aclose()
        await rx.stop()
        for p in (sim, daemon):
            if p.alive:
                p.kill()


async def test_three_daemons_survive_one_sigkilled_and_a_primary_failover(
    sentinel_set: SentinelSet, tmp_path: Path
) -> None:
    """Three daemons share the watchlist (ownership) and the outbox (one consumer each in
    every channel's group): one is SIGKILLed mid-run, its targets move to the others and its
    unacknowledged deliveries are claimed by them; then the primary dies. Every alert the
    stored history implies reaches the receiver once."""
    symbols = {"SPY": 600.0, "QQQ": 520.0, "IWM": 220.0, "DIA": 430.0}
    rx = await Receiver().start()
    sim, base_url = await start_simulator(
        tmp_path, crossing_scenario(symbols, every_s=2, count=3000), list(symbols)
    )
    text = daemon_config(base_url, sentinel_yaml(sentinel_set), rx, list(symbols), symbols)
    # one config file per daemon, as on three hosts: the instance name hashes its path, so
    # each daemon is its own member and owns its share of the symbols
    configs = {}
    for name in ("a", "b", "c"):
        (tmp_path / name).mkdir()
        configs[name] = tmp_path / name / "config.yaml"
        configs[name].write_text(text)
    config = configs["a"]
    redis = connect_config(sentinel_config(sentinel_set))
    daemons: list[Proc] = []
    try:
        for name, path in configs.items():
            daemons.append(
                await spawn(
                    [GEX_ALERTD, "run", "--config", str(path), "--no-uvloop"],
                    tmp_path / f"daemon-{name}.log",
                    tmp_path,
                    clean_env(GEX_ALERTD_CONSUMER=name),
                )
            )
        for d in daemons:
            await d.wait_log("gex-alertd started")
        names = [
            next(e["instance"] for e in d.events() if e.get("event") == "gex-alertd started")
            for d in daemons
        ]
        assert len(set(names)) == 3, names
        # the victim: a daemon that owns symbols (rendezvous hashing over the three)
        owns = {n: [s for s in symbols if owner(s, names) == n] for n in names}
        victim = next(d for d, n in zip(daemons, names, strict=True) if owns[n])
        await rx.wait_more(3)
        victim.kill()  # SIGKILL: its targets and its unacked deliveries must move
        await victim.proc.wait()
        await rx.wait_more(3)
        await asyncio.to_thread(sentinel_set.kill_primary)
        await asyncio.to_thread(sentinel_set.rejoin)
        await rx.wait_more(3)  # the survivors follow the new primary
        # the dead daemon's symbols are served again (once its membership entry expired):
        # alerts keep coming for every symbol
        mark = len(rx.accepted)
        await eventually(
            lambda: {a.symbol for a in rx.accepted[mark:]} == set(symbols),
            "an alert of every symbol after the kills",
            WAIT_S + 20,
        )

        survivors = [d for d in daemons if d is not victim]
        expected = await finish(tmp_path, config, sim, survivors, rx, consumer="a")
        assert Counter(d.webhook_id for d in rx.accepted) == Counter(expected)
        await assert_enqueued_once(redis, expected)
        no_tracebacks(tmp_path)
        print(f"alerts {len(expected)}, wire repeats {sum(rx.redeliveries.values())}")
    finally:
        await redis.aclose()
        await rx.stop()
        for p in (sim, *daemons):
            if p.alive:
                p.kill()
