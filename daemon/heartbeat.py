"""The dead-man's switch (`heartbeat: {channel, every}`), like Alertmanager's Watchdog.

Every `every`, each daemon sends one small "alive" event through the outbox to the channel:
how many symbols it polled and how many alerts it enqueued in the interval. The receiver
alerts when the messages stop: a daemon that died, hung, lost Redis or its outbox is noticed
by someone who is not the daemon. With several daemons, each sends its own, named by its
instance id (`details.instance`, and in the summary): the receiver expects one per daemon.

The id hashes the instance and the interval's slot (`now // every`), so a restart inside an
interval does not send the slot twice (`enqueue_once` enqueues an id once). `Alive` keeps the
counts between two messages and sends each; the daemon arms the duty (and re-arms it when a
reload changes `heartbeat:`). Redis down: the message is not sent, a warning says so, and the
receiver notices the missing beat, which is the point of it.
"""

from __future__ import annotations

import time

import redis.asyncio as aioredis
import structlog

from gex_alertd import keys
from gex_alertd.config import HeartbeatConfig
from gex_alertd.connections import REDIS_DOWN
from gex_alertd.enqueue_once import EnqueueOnce
from gex_alertd.model import AlertEvent
from gex_alertd.rules.engine import alert_id
from gex_alertd.rules.operator import fmt_age, iso_ms

log = structlog.get_logger()

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


class Alive:
    """What this daemon did since its last message, and the message."""

    def __init__(self, redis: aioredis.Redis, instance: str) -> None:
        self._redis = redis
        self._instance = instance
        # targets polled successfully since the last message (a dict: a fifth of a set's size)
        self._polled: dict[str, None] = {}
        self._alerts_at_beat = 0

    def polled(self, key: str) -> None:
        self._polled[key] = None

    async def send(self, beat: HeartbeatConfig, fired: int) -> None:
        """One message; `fired`: the alerts this daemon enqueued since it started."""
        polled, self._polled = len(self._polled), {}
        event = heartbeat_event(
            self._instance,
            int(time.time() * 1000),
            beat.every,
            polled,
            fired - self._alerts_at_beat,
            beat.severity,
        )
        self._alerts_at_beat = fired
        try:
            await HeartbeatSender(self._redis).send(event, beat.channel)
        except REDIS_DOWN as exc:
            # the receiver notices the missing beat: that is the point of it
            log.warning("heartbeat not enqueued", error=str(exc))
