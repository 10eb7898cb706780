"""`/api/silences` on a real ops server (loopback) over a real redis-server: add, list, expire,
bounded strict bodies, and the ops token rule."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from gex_alertd.model import AlertEvent
from gex_alertd.notify import silences as sil
from gex_alertd.notify.silences import SilenceStore
from gex_alertd.ops.http import OpsServer
from gex_alertd.ops.silences_api import MAX_BODY, SilencesApi

TOKEN = "0123456789abcdef-ops-token"
JSON = {"Content-Type": "application/json"}


async def _health() -> dict[str, Any]:
    return {"ok": True}


async def _server(redis: aioredis.Redis, token: str | None = None) -> OpsServer:
    store = SilenceStore(redis)
    server = OpsServer(
        "127.0.0.1:0", _health, auth_token=token, mounts=(SilencesApi(store).add_routes,)
    )
    await server.start()
    return server


@pytest.fixture
async def base(redis: aioredis.Redis) -> AsyncIterator[str]:
    server = await _server(redis)
    yield f"http://127.0.0.1:{server.port}/api/silences"
    await server.stop()


def _event(symbol: str = "SPY") -> AlertEvent:
    return AlertEvent(
        id="a", rule="spy-flip", type="flip_cross", symbol=symbol, expiry=None,
        severity="warning", as_of="t", fired_at="t", summary="s",
    )  # fmt: skip


async def test_add_list_expire(base: str, redis: aioredis.Redis) -> None:
    async with aiohttp.ClientSession() as http:
        body = {"matchers": {"rule": "spy-flip", "symbol": "spy"}, "duration": "1h",
                "comment": "rolling the feed", "created_by": "ops"}  # fmt: skip
        async with http.post(base, json=body) as resp:
            assert resp.status == 201, await resp.text()
            created = await resp.json()
        assert created["status"] == "active"
        assert created["matchers"] == {"rule": "spy-flip", "symbol": "SPY"}
        sid = created["id"]
        # stored where the daemons read it: the delivery check sees it
        assert (await SilenceStore(redis).check(_event(), "desk")) is not None
        async with http.get(base) as resp:
            listed = await resp.json()
        assert [s["id"] for s in listed["silences"]] == [sid]
        async with http.delete(f"{base}/{sid}") as resp:
            assert resp.status == 200
            assert (await resp.json())["status"] == "expired"
        assert (await SilenceStore(redis).check(_event(), "desk")) is None
        async with http.get(base) as resp:
            assert (await resp.json())["silences"] == []
        async with http.get(base, params={"all": "1"}) as resp:
            assert [s["status"] for s in (await resp.json())["silences"]] == ["expired"]
        async with http.delete(f"{base}/nope") as resp:
            assert resp.status == 404
            assert "no silence with id" in (await resp.json())["error"]


async def test_ends_at_instead_of_duration(base: str, redis: aioredis.Redis) -> None:
    now = await SilenceStore(redis).server_now()
    async with aiohttp.ClientSession() as http:
        body = {"matchers": {"channel": "desk"}, "ends_at": (now.replace(year=now.year + 1))
                .isoformat()}  # fmt: skip
        async with http.post(base, json=body) as resp:
            assert resp.status == 201, await resp.text()


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b'{"matchers": {}, "duration": "1h"}', "at least one matcher"),
        (b'{"matchers": {"rule": "r"}}', "exactly one of duration and ends_at"),
        (b'{"matchers": {"rule": "r"}, "duration": "soon"}', "duration"),
        (b'{"matchers": {"colour": "r"}, "duration": "1h"}', "colour"),
        (b'{"matchers": {"rule": "r"}, "duration": "1h", "x": 1}', "x"),
        (b"[1, 2", "invalid silence"),
        # a naive time would meet the aware server clock at every delivery (TypeError)
        (
            b'{"matchers": {"rule": "r"}, "duration": "1h", "starts_at": "2026-05-15T10:00:00"}',
            "starts_at: give a time zone",
        ),
        (
            b'{"matchers": {"rule": "r"}, "ends_at": "2026-05-15T11:00:00Z",'
            b' "starts_at": "2026-05-15T10:00:00"}',
            "starts_at: give a time zone",
        ),
        (
            b'{"matchers": {"rule": "r"}, "duration": "1h", "starts_at": "9999-12-31T23:00:00Z"}',
            "starts_at: too far in the future",
        ),
    ],
)
async def test_bad_bodies_are_400_naming_the_cause(
    base: str, redis: aioredis.Redis, body: bytes, error: str
) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(base, data=body, headers=JSON) as resp:
            assert resp.status == 400
            assert error in (await resp.json())["error"]
    assert await redis.hlen(sil.KEY) == 0


async def test_a_huge_body_is_refused_unread(base: str, redis: aioredis.Redis) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(base, data=b"x" * (MAX_BODY + 1), headers=JSON) as resp:
            assert resp.status == 413

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it comes
            for _ in range(64):
                yield b"y" * 1024

        async with http.post(base, data=chunks(), headers=JSON) as resp:
            assert resp.status == 413
    assert await redis.hlen(sil.KEY) == 0


async def test_the_ops_token_guards_the_api(redis: aioredis.Redis) -> None:
    server = await _server(redis, token=TOKEN)
    url = f"http://127.0.0.1:{server.port}/api/silences"
    body = {"matchers": {"rule": "r"}, "duration": "1h"}
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(url, json=body) as resp:
                assert resp.status == 401
            async with http.get(url) as resp:
                assert resp.status == 401
            assert await redis.hlen(sil.KEY) == 0
            auth = {"Authorization": f"Bearer {TOKEN}"}
            async with http.post(url, json=body, headers=auth) as resp:
                assert resp.status == 201
                sid = (await resp.json())["id"]
            async with http.delete(f"{url}/{sid}") as resp:
                assert resp.status == 401
            async with http.delete(f"{url}/{sid}", headers=auth) as resp:
                assert resp.status == 200
    finally:
        await server.stop()


async def test_only_json_bodies_so_no_cross_site_form_can_post(
    base: str, redis: aioredis.Redis
) -> None:
    """A form or a fetch without preflight sends text/plain or form types: refused unread."""
    body = b'{"matchers": {"rule": "r"}, "duration": "1h"}'
    async with aiohttp.ClientSession() as http:
        for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
            async with http.post(base, data=body, headers={"Content-Type": ctype}) as resp:
                assert resp.status == 415, ctype
    assert await redis.hlen(sil.KEY) == 0
