"""`check` against a real upstream and Redis, and `tail` printing snapshots as they land."""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import UTC, datetime, timedelta

import msgspec

from gex_alertd import store
from gex_alertd.config import RedisConfig
from gex_alertd.model import decode_flow_gex
from tests.support.upstream import Reply, Upstream, flow_gex_body
from tests.support.wait import WAIT_S


def write_config(tmp_path, redis_url: str, base_url: str) -> str:
    p = tmp_path / "c.yaml"
    p.write_text(
        f"source: {{kind: flowgex, base_url: '{base_url}', api_key: '${{TEST_KEY}}'}}\n"
        f"redis: {{url: '{redis_url}'}}\n"
        "watch: {symbols: [SPY]}\n"
    )
    return str(p)


async def run_cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gex_alertd", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), timeout=WAIT_S)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_check_accepts_a_good_key(tmp_path, redis_url):
    async with Upstream() as up:
        cfg = write_config(tmp_path, redis_url, up.url)
        rc, out, err = await run_cli("check", "--config", cfg, env={"TEST_KEY": "good-key-123"})
        assert up.requests[0].headers["X-Api-Key"] == "good-key-123"
    assert rc == 0, err
    assert "redis" in out and "key accepted" in out
    assert "good-key-123" not in out + err


async def test_check_reports_a_refused_key_without_leaking_it(tmp_path, redis_url):
    async with Upstream() as up:
        up.push(Reply(401, {"error": "unauthorized", "message": "Invalid API key"}))
        cfg = write_config(tmp_path, redis_url, up.url)
        rc, out, err = await run_cli("check", "--config", cfg, env={"TEST_KEY": "bad-key-456"})
    assert rc == 1
    assert "key refused" in err and "Invalid API key" in err
    assert "bad-key-456" not in out + err


async def test_check_reports_unreachable_redis(tmp_path):
    async with Upstream() as up:
        cfg = write_config(tmp_path, "redis://127.0.0.1:1/0", up.url)
        rc, _out, err = await run_cli("check", "--config", cfg, env={"TEST_KEY": "k-789xyz"})
    assert rc == 1
    assert "FAIL redis redis://127.0.0.1:1/0" in err


async def test_tail_prints_new_snapshots(tmp_path, redis, redis_url):
    cfg = write_config(tmp_path, redis_url, "http://127.0.0.1:9")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gex_alertd", "tail", "--config", cfg, "SPY",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "TEST_KEY": "k-000000"},
    )  # fmt: skip
    try:
        body = flow_gex_body("SPY", as_of=datetime(2026, 11, 24, 15, 0, tzinfo=UTC), spot=601.5)
        snap = decode_flow_gex(msgspec.json.encode(body))
        assert proc.stdout is not None
        # one read, never cancelled: a line half read when a short timeout fired would be lost
        reading = asyncio.ensure_future(proc.stdout.readline())
        # keep writing newer snapshots until tail, once started and subscribed, prints; how
        # long its start-up takes is the machine's business
        async with asyncio.timeout(WAIT_S):
            while not reading.done():
                await store.write_snapshot(
                    redis, snap, None, RedisConfig(url=redis_url, retention=None)
                )
                snap = msgspec.structs.replace(snap, as_of=snap.as_of + timedelta(seconds=1))
                await asyncio.wait({reading}, timeout=0.2)
        text = reading.result().decode()
        assert "SPY" in text and "spot     601.50" in text and "20 strikes" in text, text
    finally:
        proc.terminate()
        await proc.wait()
