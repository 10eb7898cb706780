"""A SIGHUP that arrives while the daemon is still starting (its first membership beat or its
channels under way) is applied once the start has finished, not in the middle of it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import redis.asyncio as aioredis
import yaml

from gex_alertd import config as config_mod
from gex_alertd.app import Daemon
from tests.support.wait import eventually


def config_text(redis_url: str, symbols: list[str]) -> str:
    tree = {
        "source": {"kind": "simulator", "simulator": {"speed": 10, "cache_s": 0}},
        "redis": {"url": redis_url},
        "watch": {"interval_s": 0.2, "jitter_s": 0, "market_hours": "always", "symbols": symbols},
        "channels": {"tty": {"type": "console"}},
        "ops": {"listen": None},
    }
    return yaml.safe_dump(tree)


async def test_a_reload_during_start_up_is_applied_after_it(
    redis: aioredis.Redis, redis_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(config_text(redis_url, ["SPY"]))
    daemon = Daemon(config_mod.load(path))
    # writes wait (the first beat among them): the start stops between its pool and its duties
    await redis.execute_command("CLIENT", "PAUSE", "60000", "WRITE")
    starting = asyncio.ensure_future(daemon.start())
    reload: asyncio.Future[bool] | None = None
    try:
        await eventually(lambda: daemon.membership is not None, "the start at its first beat")
        path.write_text(config_text(redis_url, ["SPY", "QQQ"]))
        reload = asyncio.ensure_future(daemon.reload_from_disk())
        # applied here, it found the pool without its duties (AssertionError, half applied)
        await asyncio.wait({reload}, timeout=2)
        assert not reload.done() or reload.exception() is None
        await redis.execute_command("CLIENT", "UNPAUSE")
        await asyncio.wait_for(starting, 60)
        assert await asyncio.wait_for(reload, 60) is True
        assert daemon.pool is not None and set(daemon.pool.owned) == {"SPY", "QQQ"}
    finally:
        await redis.execute_command("CLIENT", "UNPAUSE")
        if not starting.done():
            await asyncio.wait({starting}, timeout=60)
        await daemon.shutdown()
