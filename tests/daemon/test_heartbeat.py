"""The dead-man's switch: one message per daemon per interval, enqueued once."""

from __future__ import annotations

import redis.asyncio as aioredis

from gex_alertd import keys
from gex_alertd.heartbeat import HeartbeatSender, heartbeat_event
from gex_alertd.model import decode_alert, decode_channels
from tests.support.outbox import all_entries

T = 1_764_000_000_000  # ms, a multiple of 60 s


def test_one_id_per_instance_and_interval() -> None:
    a = heartbeat_event("host:a", T + 1_000, 60, polled=3, alerts=2)
    assert a.id == heartbeat_event("host:a", T + 59_000, 60, polled=9, alerts=0).id
    assert a.id != heartbeat_event("host:a", T + 60_000, 60, polled=3, alerts=2).id
    assert a.id != heartbeat_event("host:b", T + 1_000, 60, polled=3, alerts=2).id
    assert a.summary == "gex-alertd host:a alive: 3 symbols polled, 2 alerts in the last 60s"
    assert a.details == {"instance": "host:a", "symbols_polled": 3, "alerts": 2, "interval_s": 60.0}
    assert (a.rule, a.symbol, a.severity, a.status) == ("heartbeat", "*", "info", "firing")


async def test_sent_once_per_interval_to_its_channel(redis: aioredis.Redis) -> None:
    sender = HeartbeatSender(redis)
    first = heartbeat_event("host:a", T + 1_000, 60, polled=3, alerts=0)
    assert await sender.send(first, "pager")
    # a restart inside the same interval: the same id, not sent again
    assert not await sender.send(heartbeat_event("host:a", T + 2_000, 60, 1, 0), "pager")
    assert await sender.send(heartbeat_event("host:b", T + 2_000, 60, 1, 0), "pager")
    got = await all_entries(redis)
    assert len(got) == 2
    assert await redis.xlen(keys.outbox(keys.OPS_SYMBOL)) == 2  # the operator outbox
    fields = got[0]
    assert decode_channels(fields[b"channels"]) == ["pager"]
    assert decode_alert(fields[b"event"]) == first
