"""Read every outbox stream (one per symbol, plus the operator one) as one list, for tests
that check what the daemon enqueued wherever it went."""

from __future__ import annotations

import redis.asyncio as aioredis

from gex_alertd.connections import Fields, entries, entry_key
from gex_alertd.notify.outbox import all_streams


async def all_entries(redis: aioredis.Redis) -> list[Fields]:
    """The fields of every outbox entry, oldest first across streams (by entry id)."""
    got = [e for stream in await all_streams(redis) for e in entries(await redis.xrange(stream))]
    return [fields for _eid, fields in sorted(got, key=lambda e: entry_key(e[0]))]
