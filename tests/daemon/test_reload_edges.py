"""A reload's edges: a SIGHUP that arrives while the daemon is still starting (its first
membership beat or its channels under way) is applied once the start has finished, not in the
middle of it; what a reload cannot apply is said, not silently dropped."""

from __future__ import annotations

import asyncio
from pathlib import Path

import redis.asyncio as aioredis
import structlog
import yaml

from gex_alertd import config as config_mod
from gex_alertd.app import Daemon
from tests.support.wait import eventually


def config_text(redis_url: str, symbols: list[str], **ops: object) -> str:
    tree = {
        "source": {"kind": "simulator", "simulator": {"speed": 10, "cache_s": 0}},
        "redis": {"url": redis_url},
        "watch": {"interval_s": 0.2, "jitter_s": 0, "market_hours": "always", "symbols": symbols},
        "channels": {"tty": {"type": "console"}},
        "ops": {"listen": None, **ops},
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


async def test_a_reload_changing_the_ops_server_or_the_log_says_it_needs_a_restart(
    redis: aioredis.Redis, redis_url: str, tmp_path: Path
) -> None:
    # applied silently as "config reloaded", a new ops.auth_token (rotating a leaked one) left
    # the old token the one the ops server checks, with nothing to tell
    path = tmp_path / "config.yaml"
    path.write_text(config_text(redis_url, ["SPY"]))
    daemon = Daemon(config_mod.load(path))
    try:
        await daemon.start()
        token = "t0ken-" + "a" * 24
        path.write_text(config_text(redis_url, ["SPY"], auth_token=token, log_level="debug"))
        with structlog.testing.capture_logs() as logs:
            assert await daemon.reload_from_disk() is True
        said = [e for e in logs if "restart" in e["event"] and e["log_level"] == "warning"]
        assert said and "ops" in said[0]["event"], logs
        assert daemon.cfg.ops.auth_token is None and daemon.cfg.ops.log_level == "info"
    finally:
        await daemon.shutdown()
