"""The test upstream itself: routing of scripted replies, recording, defaults."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web

from tests.support.upstream import Reply, Upstream


async def test_path_queue_then_shared_queue_then_default() -> None:
    async with Upstream(default=Reply(204)) as up, aiohttp.ClientSession() as s:
        up.push(Reply(201, "shared"))
        up.push(Reply(202, {"a": 1}), symbol="SPY")
        statuses = []
        for path in ("/v1/flow/gex/QQQ", "/v1/flow/gex/SPY", "/v1/flow/gex/SPY", "/x?y=1"):
            async with s.get(up.url + path, headers={"X-Test": "1"}) as resp:
                statuses.append((resp.status, await resp.read()))
        assert statuses == [(201, b"shared"), (202, b'{"a":1}'), (204, b""), (204, b"")]
        assert up.pending() == 0
        assert [r.status for r in up.requests] == [201, 202, 204, 204]
        assert up.requests[3].query == {"y": "1"} and up.requests[3].headers["X-Test"] == "1"
        assert all(r.responded_at and r.responded_at >= r.arrived_at for r in up.requests)
        assert len(up.requests_for(symbol="SPY")) == 2


async def test_callable_default_and_wait_for_requests() -> None:
    async def echo(request: web.Request) -> Reply:
        return Reply.json({"path": request.path}, status=418)

    async with Upstream(default=echo) as up, aiohttp.ClientSession() as s:
        task = asyncio.create_task(s.get(up.url + "/hello"))
        (rec,) = await up.wait_for_requests(1)
        resp = await task
        assert resp.status == 418 and await resp.json() == {"path": "/hello"}
        resp.release()
        assert rec.path == "/hello"
        up.reset()
        assert up.requests == []
        with pytest.raises(AssertionError, match="saw 0 requests"):
            await up.wait_for_requests(1, timeout_s=0.05)


async def test_default_serves_fresh_snapshots() -> None:
    async with Upstream() as up, aiohttp.ClientSession() as s:
        bodies = []
        for _ in range(2):
            async with s.get(up.url + "/v1/flow/gex/SPY", params={"expiry": "2026-05-15"}) as r:
                bodies.append(await r.json())
        assert bodies[0]["symbol"] == "SPY" and bodies[0]["expiry"] == "2026-05-15"
        assert bodies[1]["as_of"] > bodies[0]["as_of"]
