"""Issue 17 item 7 (storage side): an outbox entry's channel list is a JSON list, so no
channel name can split into two; entries queued in the older comma form are still read."""

from __future__ import annotations

import redis.asyncio as aioredis

from gex_alertd import keys
from gex_alertd.model import decode_channels, encode_alert, encode_channels, outbox_fields
from gex_alertd.notify.dispatch import Dispatcher
from tests.notify.support import Receiver, alert, make_config


def test_the_channel_list_round_trips_whatever_the_names() -> None:
    names = ["tty,ops", "desk", 'q"uote', "ü"]
    assert decode_channels(encode_channels(names)) == names
    assert outbox_fields(alert(1), names)["channels"] == encode_channels(names)


def test_the_comma_form_of_older_entries_is_still_read() -> None:
    assert decode_channels(b"ops,desk") == ["ops", "desk"]
    assert decode_channels(b"") == []
    assert decode_channels(b"[not json") == []  # garbled: routed nowhere, never mis-routed


async def test_old_and_new_entries_are_both_delivered(
    redis: aioredis.Redis, redis_url: str
) -> None:
    rx = await Receiver().start()
    d = Dispatcher(redis, make_config({"ops": {"type": "webhook", "url": rx.url}}, redis_url))
    await d.start()
    try:
        old = alert(1)  # as a daemon before this change queued it
        await redis.xadd(
            keys.outbox("SPY"),
            {"id": old.id, "channels": "desk,ops", "symbol": "SPY", "event": encode_alert(old)},
        )
        await redis.xadd(keys.outbox("SPY"), outbox_fields(alert(2), ["ops"]))
        await redis.xadd(keys.outbox("SPY"), outbox_fields(alert(3), ["tty,ops"]))  # not "ops"
        await redis.xadd(keys.outbox("SPY"), outbox_fields(alert(4), ["ops"]))
        await rx.wait_for(3)
        assert rx.ids() == [alert(1).id, alert(2).id, alert(4).id]
    finally:
        await d.stop()
        await rx.stop()
