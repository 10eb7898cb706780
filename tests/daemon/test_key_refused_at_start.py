"""A key refused at start-up (startup_key.py, told by Daemon._observe): flowgex-api.md makes a
401/403 fatal at start-up and, at run time, an alert and a back-off
(tests/hostile/test_upstream_auth.py). `run` against a real upstream that refuses the key before
ever taking it ends with exit 2 and a line that names the cause (never the key), having stored
nothing; an upstream that is down or failing at start-up is no reason to stop, and polling goes
on as usual."""

from __future__ import annotations

import asyncio
from pathlib import Path

import redis.asyncio as aioredis

from gex_alertd import keys
from tests.hostile.upstream import echo_headers
from tests.reliability.support import API_KEY, start_daemon
from tests.support.redis_server import RedisServer
from tests.support.upstream import Reply, Upstream
from tests.support.wait import eventually

EXIT_WAIT_S = 120.0  # a start and a stop on a busy 2-core machine


def _config(tmp: Path, url: str, redis_url: str) -> Path:
    path = tmp / "config.yaml"
    path.write_text(f"""
source: {{kind: flowgex, base_url: "{url}", api_key: {API_KEY}, requests_per_min: 100000,
          backoff_base_s: 0.05, backoff_max_s: 0.2}}
redis: {{url: "{redis_url}"}}
watch: {{interval_s: 0.2, jitter_s: 0, market_hours: always, symbols: [SPY, QQQ]}}
ops: {{listen: null}}  # not the default port: another daemon on the machine may hold it
""")
    return path


async def _run_to_exit(tmp: Path, url: str, redis_url: str) -> tuple[int, str]:
    """`run` against the upstream at `url` until it exits: its code and its output."""
    daemon = await start_daemon(tmp, _config(tmp, url, redis_url))
    try:
        code = await asyncio.wait_for(daemon.proc.wait(), EXIT_WAIT_S)
    finally:
        daemon.kill()
    return code, daemon.output()


async def test_run_exits_2_when_the_key_is_refused_at_start_up(
    private_redis: RedisServer, tmp_path: Path
) -> None:
    # the upstream echoes the request's headers (the key among them) into its message
    async with Upstream(default=echo_headers) as up:
        code, out = await _run_to_exit(tmp_path, up.url, private_redis.url)
        assert code == 2, out[-3000:]
        assert "source.api_key" in out and "refused it at start-up" in out, out[-3000:]
        assert "401" in out
        assert API_KEY not in out  # echoed by the upstream, redacted
        assert "refused the API key at start-up; stopping" in out
        assert up.requests  # asked, and refused
        r = aioredis.Redis.from_url(private_redis.url)
        try:
            assert [await r.exists(keys.snap(s)) for s in ("SPY", "QQQ")] == [0, 0]
        finally:
            await r.aclose()


async def test_a_plan_without_the_endpoint_is_named_when_run_stops(
    private_redis: RedisServer, tmp_path: Path
) -> None:
    body = {"message": "upgrade required", "current_plan": "basic", "required_plan": "growth"}
    async with Upstream(default=Reply.json(body, status=403)) as up:
        code, out = await _run_to_exit(tmp_path, up.url, private_redis.url)
        assert code == 2, out[-3000:]
        assert "refused it at start-up" in out and "basic" in out and "growth" in out, out[-3000:]


async def test_an_upstream_failing_at_start_up_is_no_reason_to_stop(
    private_redis: RedisServer, tmp_path: Path
) -> None:
    async with Upstream(default=Reply.json({"message": "maintenance"}, status=503)) as up:
        daemon = await start_daemon(tmp_path, _config(tmp_path, up.url, private_redis.url))
        r = aioredis.Redis.from_url(private_redis.url)
        try:
            await daemon.wait_log("gex-alertd started")
            await up.wait_for_requests(4)  # both targets answered 503, and retried
            assert daemon.alive, daemon.output()[-3000:]
            up.set_default(None)  # valid snapshots from here on

            async def stored() -> bool:
                assert daemon.alive, daemon.output()[-3000:]
                return int(await r.xlen(keys.snap("SPY"))) > 0

            await eventually(stored, "SPY stored once the upstream answers")
            assert await daemon.stop() == 0
        finally:
            await r.aclose()
            daemon.kill()


async def test_an_error_body_too_large_to_read_does_not_count_as_the_key_taken() -> None:
    # a 401 (or a proxy's 5xx page) whose body passes max_body_bytes, or comes in an encoding
    # the client does not read, is a MalformedPayload carrying that status: it counted as a 200
    # that did not decode, the key as taken, and the 401s after it as run-time refusals
    from gex_alertd import config as config_mod
    from gex_alertd.app import Daemon
    from gex_alertd.config import WatchTarget
    from gex_alertd.sources.errors import AuthError, MalformedPayload

    spy = WatchTarget("SPY", None, 15.0, 0.0)
    refused = AuthError("Invalid API key", symbol="SPY", status=401)
    for status, taken in ((401, False), (502, False), (200, True)):
        daemon = Daemon(config_mod.parse({}, "test"))
        try:
            too_large = MalformedPayload("response body larger than 1024 bytes", status=status)
            await daemon._observe(spy, None, too_large)
            await daemon._observe(spy, None, refused)
            assert (daemon.startup_key.refused is None) is taken, status
        finally:
            await daemon.redis.aclose()
