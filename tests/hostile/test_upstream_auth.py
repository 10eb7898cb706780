"""/healthz while the upstream refuses the key (issue 17 item 14, first half): every symbol gets
401 and the daemon said ok. The daemon process against a real upstream that echoes the request
headers (the API key among them) into its error message, as a misconfigured proxy does."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import redis.asyncio as aioredis

from gex_alertd import keys
from tests.hostile.upstream import echo_headers, recent, snapshot
from tests.reliability.support import API_KEY, start_daemon
from tests.support.redis_server import RedisServer, free_port
from tests.support.upstream import Reply, Upstream
from tests.support.wait import eventually


def fresh(request: aiohttp.web.Request) -> Reply:
    return snapshot(request.path.rsplit("/", 1)[-1], as_of=recent())


async def test_healthz_not_ok_while_every_symbol_gets_401_and_the_key_never_shows(
    private_redis: RedisServer, tmp_path: Path
) -> None:
    # the key accepted at start-up (a refusal then ends the start: test_keycheck.py), refused
    # at run time, as a key revoked while the daemon runs
    async with Upstream(default=fresh) as up:
        port = free_port()
        config = tmp_path / "config.yaml"
        config.write_text(f"""
source: {{kind: flowgex, base_url: "{up.url}", api_key: {API_KEY}, requests_per_min: 100000,
          backoff_base_s: 0.05, backoff_max_s: 0.2}}
redis: {{url: "{private_redis.url}"}}
watch: {{interval_s: 0.1, jitter_s: 0, market_hours: always, symbols: [SPY, QQQ]}}
ops: {{listen: "127.0.0.1:{port}", log_format: json}}
""")
        daemon = await start_daemon(tmp_path, config)
        r = aioredis.Redis.from_url(private_redis.url)
        try:
            await daemon.wait_log("gex-alertd started")

            async def taken() -> bool:
                assert daemon.alive, daemon.output()[-3000:]
                return int(await r.xlen(keys.snap("SPY"))) > 0

            await eventually(taken, "the key taken: SPY stored")
            up.set_default(echo_headers)
            async with aiohttp.ClientSession() as session:

                async def health() -> tuple[int, str]:
                    assert daemon.alive, daemon.output()[-3000:]
                    try:
                        async with session.get(f"http://127.0.0.1:{port}/healthz") as resp:
                            return resp.status, await resp.text()
                    except aiohttp.ClientConnectionError:
                        return 0, ""  # not listening yet

                async def refused() -> bool:
                    status, body = await health()
                    return status == 503 and "refuses the API key for every symbol" in body

                await eventually(refused, "/healthz not ok while every symbol gets 401")
                _, body = await health()
                assert "HTTP 401" in body
                assert API_KEY not in body  # echoed by the upstream, redacted here

                # the key works again: fetching resumes and /healthz is ok
                await r.delete(keys.snap("SPY"))
                up.set_default(fresh)

                async def recovered() -> bool:
                    status, _ = await health()
                    stored = int(await r.xlen(keys.snap("SPY"))) > 0
                    return status == 200 and stored

                await eventually(recovered, "/healthz ok once the key is accepted")
            assert await daemon.stop() == 0
            output = daemon.output()
            assert API_KEY not in output
            assert "unauthorized, you sent" in output  # the upstream's message, redacted
        finally:
            await r.aclose()
            daemon.kill()
