"""A Redis primary's death under a running daemon (Sentinel: a primary, a replica, three
sentinels): the daemon follows the promoted replica, and with WAIT (on by default with
Sentinel) no acknowledged snapshot or alert is lost and none is delivered twice.

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
from tests.reliability.support import (
    Receiver,
    crossing_scenario,
    daemon_config,
    finish,
    outbox_ids,
    start_daemon,
    start_simulator,
    stored_as_of,
)
from tests.reliability.test_crashes import _no_tracebacks
from tests.support.redis_cluster import SentinelSet

SYMBOLS = {"SPY": 600.0, "QQQ": 520.0}
FAILOVERS = 2


async def test_the_daemon_follows_sentinel_failovers_losing_and_repeating_nothing(
    sentinel_set: SentinelSet, tmp_path: Path
) -> None:
    rx = await Receiver().start()
    sim, base_url = await start_simulator(
        tmp_path, crossing_scenario(SYMBOLS, every_s=2, count=3000), list(SYMBOLS)
    )
    config = tmp_path / "config.yaml"
    text = daemon_config(base_url, "redis://unused", rx, list(SYMBOLS), SYMBOLS)
    nodes = sentinel_set.sentinel_nodes
    text = text.replace(
        'redis: {url: "redis://unused"}',
        f"redis: {{sentinel: {{master: {sentinel_set.master_name}, nodes: {nodes}}}}}",
    )
    config.write_text(text)
    rc = RedisConfig(sentinel=SentinelConfig(master=sentinel_set.master_name, nodes=nodes))
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
        expected = await finish(tmp_path, config, sim, daemon, rx)

        accepted = [d.webhook_id for d in rx.accepted]
        assert Counter(accepted) == Counter(expected)  # each expected alert once, no other
        streams = await stored_as_of(redis)
        assert set(streams) == {f"gex:{{{s}}}:snap" for s in SYMBOLS}
        for key, ms in streams.items():
            assert ms == sorted(set(ms)), f"{key}: a snapshot stored twice or out of order"
        enqueued = await outbox_ids(redis)
        assert sorted(enqueued) == sorted(set(enqueued)) == sorted(expected)
        _no_tracebacks(tmp_path)
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
