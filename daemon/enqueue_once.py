"""Enqueue one alert event into the outbox at most once, outside a snapshot commit.

`replay --send`, the outcome follow-ups (`outcomes.live`), the 410 operator alert and the
heartbeat put events into the outbox that no snapshot commit carries; a retried run, a restart
or a second daemon must not enqueue the same id twice. SET NX on the id's dedup key and the
XADD happen in one script, so a crash between them cannot lose the event or leave it
half-sent. The script is the operator rules' `operator.lua` run without a state field: one
place says how an id is enqueued once outside `commit.lua`.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from gex_alertd import keys
from gex_alertd.commit import DEDUP_TTL_MS
from gex_alertd.model import AlertEvent
from gex_alertd.operator_rules import LUA, event_args


class EnqueueOnce:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._script = redis.register_script(LUA)

    async def __call__(
        self, event: AlertEvent, channels: list[str], *, dedup: str | None = None
    ) -> bool:
        """True when enqueued now, False when this id was enqueued before. `dedup` is the
        SET NX key; by default the live commit's (`keys.alert_dedup`), so an alert the
        daemon already enqueued is not enqueued again."""
        if dedup is None:
            dedup = keys.alert_dedup(event.symbol, event.id)
        args: list[Any] = ["", "", "", DEDUP_TTL_MS]  # no state field: only the event
        args += event_args(event, channels)
        # the dedup key must share the outbox's slot (keys in `{SYM}`): one script on a cluster
        reply = await self._script(keys=[dedup, keys.outbox(event.symbol), dedup], args=args)
        return bool(int(reply[1]))
