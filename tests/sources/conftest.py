from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from gex_alertd.sources.flowgex import FlowGexClient
from tests.support.upstream import Upstream

API_KEY = "fgx_live_TESTKEY_5f2c9a7e41"


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    async with Upstream() as up:
        yield up


ClientFactory = Callable[..., FlowGexClient]


@pytest.fixture
async def make_client(upstream: Upstream) -> AsyncIterator[ClientFactory]:
    """Clients on the test's upstream; generous budget unless a test sets one. Closed after."""
    made: list[FlowGexClient] = []

    def make(**kw: Any) -> FlowGexClient:
        kw.setdefault("requests_per_min", 60_000)
        kw.setdefault("timeout_s", 5)
        client = FlowGexClient(kw.pop("base_url", upstream.url), kw.pop("api_key", API_KEY), **kw)
        made.append(client)
        return client

    yield make
    for client in made:
        await client.close()


async def gather_outcomes(*aws: Awaitable[Any]) -> list[Any]:
    import asyncio

    return list(await asyncio.gather(*aws, return_exceptions=True))
