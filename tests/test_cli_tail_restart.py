"""`tail SYMBOL` rides out a Redis restart (the client's retries, ~1.5 s) and goes on printing
the snapshots committed after it. Its XREAD BLOCK was 5 s, the client's socket timeout: after a
restart the timeout won the race and tail ended, "Timeout reading from ...", exit 1. A real tail
subprocess against a redis-server of the test's own, killed and started again on the same
port 0.3 s later."""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import redis.asyncio as aioredis

from gex_alertd import store
from gex_alertd.config import RedisConfig
from gex_alertd.model import decode_flow_gex
from tests.support.redis_server import RedisServer
from tests.support.upstream import flow_gex_body
from tests.support.wait import WAIT_S, eventually


async def test_tail_goes_on_after_a_redis_restart(
    tmp_path: Path, private_redis: RedisServer
) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"redis: {{url: '{private_redis.url}'}}\nwatch: {{symbols: [SPY]}}\n")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gex_alertd", "tail", "-c", str(cfg), "SPY",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env={**os.environ},
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    client = aioredis.Redis.from_url(private_redis.url)
    try:

        async def connected() -> bool:
            return any(c.get("name") == "gex-alertd-tail" for c in await client.client_list())

        await eventually(connected, "tail connected")
        await client.aclose()
        # down for a moment, well inside the client's ~1.5 s of retries (an outage, not a crash
        # loop: tail must ride it out); AOF on, so what was there survives
        private_redis.kill()
        await asyncio.sleep(0.3)
        private_redis.start()
        client = aioredis.Redis.from_url(private_redis.url)
        await eventually(connected, "tail connected again")

        async def idle_reads_done() -> bool:
            # three XREADs on the restarted server with nothing to read: the blocks ran to
            # their end and tail read again (the old 5 s block lost to the socket timeout)
            stats = await client.info("commandstats")
            return int(stats.get("cmdstat_xread", {}).get("calls", 0)) >= 3 or (
                proc.returncode is not None
            )

        await eventually(idle_reads_done, "tail reading on", timeout_s=4 * WAIT_S)
        body = flow_gex_body("SPY", as_of=datetime(2026, 11, 24, 15, 0, tzinfo=UTC), spot=601.5)
        snap = decode_flow_gex(msgspec.json.encode(body))
        await store.write_snapshot(client, snap, None, RedisConfig(url=private_redis.url))
        line = await asyncio.wait_for(proc.stdout.readline(), WAIT_S)
        assert b"spot     601.50" in line, (line, await proc.stderr.read())
        assert proc.returncode is None  # still following
    finally:
        await client.aclose()
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
