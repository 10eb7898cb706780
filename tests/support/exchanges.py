"""Count the round trips that go through `packed.exchange` (one write, its replies read), for
tests that pin how many commands a caller packs per trip."""

from __future__ import annotations

from typing import Any

import pytest
import redis.asyncio as aioredis

from gex_alertd import packed


@pytest.fixture
def exchanges(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of commands of each `packed.exchange` call since the test started (the real
    exchange still runs: the commands reach Redis)."""
    counts: list[int] = []
    real = packed.exchange

    async def counting(
        redis: aioredis.Redis, payload: bytes, expected: int, what: str = "command(s)"
    ) -> list[Any]:
        counts.append(expected)
        return await real(redis, payload, expected, what)

    monkeypatch.setattr(packed, "exchange", counting)
    return counts
