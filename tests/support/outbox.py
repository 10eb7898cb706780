"""Read every outbox stream (one per symbol, plus the operator one) as one list, for tests
that check what the daemon enqueued wherever it went."""

from __future__ import annotations

import redis.asyncio as aioredis

from gex_alertd import keys
from gex_alertd.connections import Fields, as_str, entries


async def outbox_streams(redis: aioredis.Redis) -> list[str]:
    return sorted(
        {as_str(k) async for k in redis.scan_iter(match=keys.OUTBOX_PATTERN, _type="stream")}
    )


async def all_entries(redis: aioredis.Redis) -> list[Fields]:
    """The fields of every outbox entry, oldest first across streams (by entry id)."""
    got: list[tuple[tuple[int, int], Fields]] = []
    for stream in await outbox_streams(redis):
        for eid, fields in entries(await redis.xrange(stream)):
            ms, _, seq = as_str(eid).partition("-")
            got.append(((int(ms), int(seq or 0)), fields))
    return [f for _k, f in sorted(got, key=lambda x: x[0])]
