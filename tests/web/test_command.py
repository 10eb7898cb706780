"""`gex-alertd web`: serves the page from the config's Redis on its own, refuses a bind
beyond loopback without `ops.auth_token` (exit 2 naming it), and guards every request with
the token when one is set."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import aiohttp

from tests.support.redis_server import RedisServer, free_port
from tests.support.wait import WAIT_S, eventually

TOKEN = "web-command-token-0123456789"


def _config(tmp_path: Path, redis_url: str, ops: str = "{}") -> Path:
    p = tmp_path / "c.yaml"
    p.write_text(f'redis: {{url: "{redis_url}"}}\nwatch: {{symbols: [SPY]}}\nops: {ops}\n')
    return p


def test_a_bind_beyond_loopback_without_a_token_exits_2(tmp_path: Path) -> None:
    cfg = _config(tmp_path, "redis://127.0.0.1:1/0")
    proc = subprocess.run(
        [sys.executable, "-m", "gex_alertd", "web", "--config", str(cfg),
         "--listen", "0.0.0.0:0"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "ops.auth_token: required when listening on 0.0.0.0" in proc.stderr
    assert "Traceback" not in proc.stderr


async def test_the_standalone_page_serves_and_checks_the_token(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    cfg = _config(tmp_path, redis_server.url, f'{{auth_token: "{TOKEN}"}}')
    port = free_port()
    log = tmp_path / "web.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gex_alertd", "web", "--config", str(cfg),
            "--listen", f"127.0.0.1:{port}", stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:

            async def answers() -> bool:
                assert proc.returncode is None
                try:
                    async with http.get(base + "/api/symbols") as resp:
                        return resp.status == 401
                except aiohttp.ClientConnectionError:
                    return False

            await eventually(answers, "the web command listening")
            auth = {"Authorization": f"Bearer {TOKEN}"}
            async with http.get(base + "/api/symbols", headers=auth) as resp:
                assert resp.status == 200
                assert [r["symbol"] for r in (await resp.json())["symbols"]] == ["SPY"]
            async with http.get(base + "/", headers=auth) as resp:
                assert resp.status == 200 and "gex-alertd" in await resp.text()
            async with http.get(f"{base}/view?symbol=SPY&token={TOKEN}") as resp:
                assert resp.status == 200
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), WAIT_S) == 0
        text = log.read_text()
        assert "listening" in text and TOKEN not in text  # not even from the ?token= URL
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
