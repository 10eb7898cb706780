"""Enqueue one alert event into the outbox at most once, outside a snapshot commit.

`replay --send` and the outcome follow-ups (`outcomes.live`) put events into the outbox that
no snapshot commit carries; a retried run, a restart or a second daemon must not enqueue the
same id twice. SET NX on the id's dedup key (the one `commit.lua` uses) and the XADD happen in
one script, so a crash between them cannot lose the event or leave it half-sent.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from gex_alertd import keys
from gex_alertd.commit import DEDUP_TTL_MS
from gex_alertd.model import AlertEvent, outbox_fields

LUA = """
if redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then
  redis.call('XADD', KEYS[2], '*', unpack(ARGV, 2))
  return 1
end
return 0
"""


class EnqueueOnce:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._script = redis.register_script(LUA)

    async def __call__(self, event: AlertEvent, channels: list[str]) -> bool:
        """True when enqueued now, False when this id was enqueued before."""
        flat = [x for kv in outbox_fields(event, channels).items() for x in kv]
        names = [keys.alert_dedup(event.symbol, event.id), keys.ALERTS]
        return bool(await self._script(keys=names, args=[DEDUP_TTL_MS, *flat]))
