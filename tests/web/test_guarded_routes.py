"""With `ops.auth_token` set, every route of the ops server needs it: the pages, their static
files (ECharts included), the JSON API, the live stream, the silences API and unknown paths
alike (the middleware runs before routing, so no route can be mounted around it)."""

from __future__ import annotations

from typing import Any

import aiohttp
import redis.asyncio as aioredis

from gex_alertd.notify.silences import SilenceStore
from gex_alertd.ops.auth import COOKIE
from gex_alertd.ops.http import OpsServer
from gex_alertd.ops.silences_api import SilencesApi
from gex_alertd.web.routes import LivePage
from tests.web.conftest import TARGETS, put

TOKEN = "guarded-routes-token-0123456789"
GETS = [
    "/", "/view?symbol=SPY", "/static/app.css", "/static/vendor/echarts/echarts.min.js",
    "/static/vendor/echarts/LICENSE", "/api/symbols", "/api/SPY/snapshots", "/api/SPY/alerts",
    "/api/live", "/api/live?symbol=SPY", "/api/silences", "/healthz", "/metrics", "/no-such-path",
]  # fmt: skip


async def _health() -> dict[str, Any]:
    return {"ok": True}


async def test_every_route_needs_the_token(redis: aioredis.Redis) -> None:
    await put(redis, 0)
    live = LivePage(redis, lambda: TARGETS)
    api = SilencesApi(SilenceStore(redis))
    server = OpsServer(
        "127.0.0.1:0", _health, auth_token=TOKEN, mounts=(live.mount, api.add_routes)
    )
    await server.start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        async with aiohttp.ClientSession() as http:
            for path in GETS:
                async with http.get(base + path) as resp:
                    assert resp.status == 401, path
                    assert TOKEN not in await resp.text()
            async with http.post(
                base + "/api/silences", json={"matchers": {"rule": "r"}, "duration": "1h"}
            ) as resp:
                assert resp.status == 401
            async with http.delete(base + "/api/silences/some-id") as resp:
                assert resp.status == 401
            assert await redis.hlen("gex:silences") == 0
            assert live.hub.subscribers == 0  # the stream was never opened
            # the same routes answer with the token (the stream: its first line)
            auth = {"Authorization": f"Bearer {TOKEN}"}
            for path in GETS[:-1]:
                async with http.get(base + path, headers=auth) as resp:
                    assert resp.status == 200, path
                    if path.startswith("/api/live"):
                        assert (await resp.content.readline()).startswith(b"retry:")
            async with http.get(base + "/static/app.css", cookies={COOKIE: TOKEN}) as resp:
                assert resp.status == 200
    finally:
        await server.stop()
