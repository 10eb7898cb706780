"""A channel down for a while (a minute under GEX_SOAK=1, a few seconds by default): alerts keep
being committed meanwhile, and once the receiver is back everything arrives, each alert once,
in order per symbol (and in outbox order overall: a channel delivers its head first)."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import redis.asyncio as aioredis

from tests.reliability.support import (
    SOAK,
    Receiver,
    crossing_scenario,
    daemon_config,
    finish,
    outbox_ids,
    start_daemon,
    start_simulator,
)
from tests.support.redis_server import RedisServer
from tests.support.wait import eventually

SYMBOLS = {"SPY": 600.0, "QQQ": 520.0, "IWM": 240.0}
OUTAGE_S = 60.0 if SOAK else 4.0


async def test_channel_down_then_everything_arrives_in_order(
    private_redis: RedisServer, tmp_path: Path
) -> None:
    rx = await Receiver().start()
    # one crossing per 0.2 s of wall time at speed 10: enough for 10 minutes, so a slow run
    # does not outlast the scenario
    count = int(OUTAGE_S * 10) + 3000
    sim, base_url = await start_simulator(
        tmp_path, crossing_scenario(SYMBOLS, every_s=2, count=count), list(SYMBOLS)
    )
    config = tmp_path / "config.yaml"
    config.write_text(daemon_config(base_url, private_redis.url, rx, list(SYMBOLS), SYMBOLS))
    redis = aioredis.Redis.from_url(private_redis.url)
    daemon = await start_daemon(tmp_path, config)
    try:
        await rx.wait_more(5)
        await rx.stop()  # connection refused from now on
        delivered_before = len(rx.accepted)
        enqueued_before = len(await outbox_ids(redis))
        await asyncio.sleep(OUTAGE_S)  # the outage lasts at least this long

        async def committing() -> bool:
            assert daemon.alive, daemon.output()[-3000:]
            return len(await outbox_ids(redis)) > enqueued_before + 5

        # how many alerts a fixed outage spans depends on the machine's speed: extend it
        # until the daemon has committed some
        await eventually(committing, "alerts to keep being committed while the channel is down")
        assert len(rx.accepted) == delivered_before
        await rx.start()  # same port
        await rx.wait_more(5)
        expected = await finish(tmp_path, config, sim, [daemon], rx)
        accepted = [d.webhook_id for d in rx.accepted]
        assert Counter(accepted) == Counter(expected)
        assert sum(rx.redeliveries.values()) == 0
        # in order: overall in outbox (commit) order, hence per symbol in as_of order
        assert accepted == await outbox_ids(redis)
        for sym in SYMBOLS:
            times = [d.as_of for d in rx.accepted if d.symbol == sym]
            assert times == sorted(times), f"{sym}: alerts out of order"
        assert "Traceback" not in daemon.output()
        # the outage was noticed and logged against the channel
        assert any(
            e.get("channel") == "hook" and e.get("level") in ("warning", "error")
            for e in daemon.events()
        )
    finally:
        await redis.aclose()
        await rx.stop()
        if sim.alive:
            sim.kill()
        daemon.kill()
