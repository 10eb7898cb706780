"""Crashes: the daemon SIGKILLed at random moments, Redis SIGKILLed and restarted from its AOF.

Both run the real `gex-alertd run` process against a `gex-alertd simulate` process (which keeps
its clock while daemons come and go) and a real redis-server with `appendfsync always`. The
alerts expected are what `gex-alertd replay` derives from the stored streams afterwards: if
the live path lost an alert, fired one twice, or evaluated a snapshot against the wrong state,
replay (same engine, same ids, one pass over the final history) disagrees.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from pathlib import Path

import redis.asyncio as aioredis

from tests.reliability.support import (
    SOAK,
    Receiver,
    assert_stored_once,
    crossing_scenario,
    daemon_config,
    finish,
    no_tracebacks,
    start_daemon,
    start_simulator,
)
from tests.support.redis_server import RedisServer

SYMBOLS = {"SPY": 600.0, "QQQ": 520.0}
KILLS = 60 if SOAK else 20
SEED = 20261124


async def test_daemon_sigkilled_at_random_moments_delivers_each_alert_once(
    private_redis: RedisServer, tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    rx = await Receiver().start()
    sim, base_url = await start_simulator(
        tmp_path, crossing_scenario(SYMBOLS, every_s=2, count=3000), list(SYMBOLS)
    )
    config = tmp_path / "config.yaml"
    config.write_text(daemon_config(base_url, private_redis.url, rx, list(SYMBOLS), SYMBOLS))
    redis = aioredis.Redis.from_url(private_redis.url)
    try:
        # a quarter of the kills land during start-up; the others are timed from the moment the
        # daemon says it started, so they hit polling, committing and delivering however long
        # start-up takes on this machine (a crossing every 0.2 s per symbol)
        for i in range(KILLS):
            daemon = await start_daemon(tmp_path, config, f"daemon-{i}.log")
            if rng.random() < 0.25:
                await asyncio.sleep(rng.uniform(0.05, 0.6))
            else:
                await daemon.wait_log("gex-alertd started")
                await asyncio.sleep(rng.uniform(0.1, 1.2))
            assert daemon.alive, daemon.output()[-3000:]
            daemon.kill()
            await daemon.proc.wait()
        daemon = await start_daemon(tmp_path, config, "daemon-last.log")
        await daemon.wait_log("gex-alertd started")
        # on a slow machine the lives above may have spent most of their time starting up;
        # the last one runs until the history is rich enough to mean something
        await rx.wait_until_accepted(KILLS + 1)
        expected = await finish(tmp_path, config, sim, [daemon], rx)

        assert len(expected) > KILLS, "the scenario should imply plenty of alerts"
        accepted = [d.webhook_id for d in rx.accepted]
        assert Counter(accepted) == Counter(expected)  # each expected alert, once, nothing else
        assert rx.bad_signatures == 0
        await assert_stored_once(redis, SYMBOLS, expected)
        no_tracebacks(tmp_path)
        # at-least-once across SIGKILL: a send whose ack the kill prevented is repeated with
        # the same webhook-id, and the receiver drops it (Standard Webhooks idempotency)
        print(
            f"{KILLS} kills: {len(expected)} alerts, each accepted once; "
            f"{sum(rx.redeliveries.values())} redeliveries dropped by webhook-id"
        )
    finally:
        await redis.aclose()
        await rx.stop()
        if sim.alive:
            sim.kill()


async def test_redis_sigkilled_and_restarted_from_aof(
    private_redis: RedisServer, tmp_path: Path
) -> None:
    rx = await Receiver().start()
    sim, base_url = await start_simulator(
        tmp_path, crossing_scenario(SYMBOLS, every_s=2, count=3000), list(SYMBOLS)
    )
    config = tmp_path / "config.yaml"
    config.write_text(daemon_config(base_url, private_redis.url, rx, list(SYMBOLS), SYMBOLS))
    redis = aioredis.Redis.from_url(private_redis.url)
    daemon = await start_daemon(tmp_path, config)
    try:
        await daemon.wait_log("gex-alertd started")
        for outage in (0.3, 1.5, 3.0 if not SOAK else 20.0):
            await rx.wait_more(3)  # alive and delivering
            private_redis.kill()  # SIGKILL: no shutdown save; the AOF has every write
            await asyncio.sleep(outage)
            assert daemon.alive, daemon.output()[-3000:]
            private_redis.start()
        await rx.wait_more(3)  # reconnected: storing and delivering again
        assert daemon.alive
        expected = await finish(tmp_path, config, sim, [daemon], rx)

        accepted = [d.webhook_id for d in rx.accepted]
        assert Counter(accepted) == Counter(expected)
        # the daemon never died, so nothing was sent twice, even to the network
        assert sum(rx.redeliveries.values()) == 0
        await assert_stored_once(redis, SYMBOLS, expected)
        no_tracebacks(tmp_path)
        events = daemon.events()
        assert any(e.get("level") in ("warning", "error") for e in events)
        logged = " ".join(str(e.get("event")) for e in events).lower()
        assert "redis" in logged or "outbox unavailable" in logged or "pending" in logged
    finally:
        await redis.aclose()
        await rx.stop()
        if sim.alive:
            sim.kill()
        daemon.kill()
