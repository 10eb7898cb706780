"""The dead-man's switch (`heartbeat: {channel, every}`), like Alertmanager's Watchdog.

Every `every`, each daemon sends one small "alive" event through the outbox to the channel:
how many symbols it polled and how many alerts it enqueued in the interval. The receiver
alerts when the messages stop: a daemon that died, hung, lost Redis or its outbox is noticed
by someone who is not the daemon. With several daemons, each sends its own, named by its
instance id (`details.instance`, and in the summary): the receiver expects one per daemon.

The id hashes the instance and the interval's slot (`now // every`), so a restart inside an
interval does not send the slot twice (`enqueue_once` enqueues an id once). This module only
builds the event and commits it; the duty that calls it lives in the daemon.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from gex_alertd import keys
from gex_alertd.enqueue_once import EnqueueOnce
from gex_alertd.model import AlertEvent
from gex_alertd.rules.engine import alert_id
from gex_alertd.rules.operator import fmt_age, iso_ms

RULE = "heartbeat"


def heartbeat_event(
    instance: str, now_ms: int, every_s: float, polled: int, alerts: int, severity: str = "info"
) -> AlertEvent:
    every_ms = max(1, int(every_s * 1000))
    slot_ms = now_ms // every_ms * every_ms
    at = iso_ms(now_ms)
    window = fmt_age(float(every_s))
    return AlertEvent(
        id=alert_id(RULE, "*", None, slot_ms, extra=instance),
        rule=RULE,
        type=RULE,
        symbol="*",
        expiry=None,
        severity=severity,
        as_of=at,
        fired_at=at,
        summary=f"gex-alertd {instance} alive: {polled} symbols polled, "
        f"{alerts} alerts in the last {window}",
        details={
            "instance": instance,
            "symbols_polled": polled,
            "alerts": alerts,
            "interval_s": float(every_s),
        },
    )


class HeartbeatSender:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._enqueue = EnqueueOnce(redis)

    async def send(self, event: AlertEvent, channel: str) -> bool:
        """Enqueue the event for the channel; False when this id was enqueued before."""
        return await self._enqueue(event, [channel], dedup=keys.heartbeat_sent(event.id))
