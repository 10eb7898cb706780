"""The operator alert for a channel whose receiver answered 410 Gone (the channel stopped).

A stopped channel delivers nothing until its config is fixed and reloaded, and its own alerts
cannot say so: the operator is told on the other operator channels (`ops.operator_channels`),
never on the gone one, and not at all when there is no other. Once per channel and hour,
however many daemons see the 410 and however often: the id names the channel and the hour,
and `enqueue_once` enqueues an id once. Redis down: a warning, nothing raised; /healthz still
says the channel is disabled (ops/health.py). This module only builds the event and enqueues
it; the dispatcher says when a channel stopped.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import redis.asyncio as aioredis
import structlog

from gex_alertd.connections import REDIS_DOWN
from gex_alertd.enqueue_once import EnqueueOnce
from gex_alertd.model import AlertEvent, iso_utc

log = structlog.get_logger()

RULE = "channel-gone"


def channel_gone_event(channel: str, reason: str, now: datetime) -> AlertEvent:
    hour = now.strftime("%Y-%m-%dT%H")
    at = iso_utc(now)
    return AlertEvent(
        id=f"operator:{RULE}:{channel}:{hour}",
        rule=RULE,
        type="operator",
        symbol="*",
        expiry=None,
        severity="critical",
        as_of=at,
        fired_at=at,
        summary=f"channel {channel} disabled: its receiver is gone ({reason}); "
        "its alerts wait in the outbox until its config is fixed and reloaded",
        details={"channel": channel, "reason": reason},
    )


async def tell_channel_gone(
    redis: aioredis.Redis, operator_channels: Sequence[str], channel: str, reason: str
) -> None:
    """Enqueue the alert for the operator channels other than `channel`."""
    channels = [c for c in operator_channels if c != channel]
    if not channels:
        return
    event = channel_gone_event(channel, reason, datetime.now(UTC))
    try:
        await EnqueueOnce(redis)(event, channels)
    except REDIS_DOWN as err:
        log.warning("could not enqueue operator alert", error=str(err))
