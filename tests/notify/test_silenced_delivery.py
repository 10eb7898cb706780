"""A silenced alert is acked from that channel's group, recorded as silenced (visible in
`outbox list`), never sent, and not lost for the channels the silence does not match."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis.asyncio as aioredis

from gex_alertd import keys
from gex_alertd.notify.dispatch import Dispatcher
from gex_alertd.notify.silences import Matchers, SilenceStore, list_silenced
from tests.notify.support import Receiver, alert, enqueue, make_config
from tests.notify.test_commands import cli, write_config
from tests.support.wait import eventually


async def test_a_silenced_alert_is_recorded_acked_and_not_sent(
    tmp_path: Path, redis: aioredis.Redis, redis_url: str
) -> None:
    ops, desk = await Receiver().start(), await Receiver().start()
    store = SilenceStore(redis)
    silence = await store.add(Matchers(symbol="SPY", channel="ops"), 3600, comment="maintenance")
    channels = {
        "ops": {"type": "webhook", "url": ops.url},
        "desk": {"type": "webhook", "url": desk.url},
    }
    d = Dispatcher(redis, make_config(channels, redis_url), consumer="t1", silences=store)
    await d.start()
    try:
        await enqueue(redis, alert(1, "SPY"), ["ops", "desk"], poke=[d])
        await enqueue(redis, alert(2, "QQQ"), ["ops"], poke=[d])
        await desk.wait_for(1)
        await ops.wait_for(1)

        async def settled() -> bool:
            h = await d.health()
            return h["ops"]["pending"] == 0 and h["desk"]["pending"] == 0

        await eventually(settled, "both channels acked everything")
        assert ops.ids() == [alert(2, "QQQ").id]  # SPY held back on ops only
        assert desk.ids() == [alert(1, "SPY").id]
        assert (await d.health())["ops"]["silenced"] == 1
        [record] = await list_silenced(redis)
        assert (record.alert_id, record.channel, record.silence) == (
            alert(1, "SPY").id,
            "ops",
            silence.id,
        )
    finally:
        await d.stop()
        await ops.stop()
        await desk.stop()
    rc, out = await cli("outbox", "-c", write_config(tmp_path, redis_url, channels), "list")
    assert rc == 0, out
    assert "SILENCED (1 most recent)" in out and f"silence={silence.id}" in out


async def test_a_silenced_record_stream_of_another_type_does_not_stop_the_channel(
    redis: aioredis.Redis, redis_url: str
) -> None:
    # gex:silenced made another type by hand: recording the silenced alert raised, it stayed
    # at the head of the channel's buffer and every turn failed on it, so nothing else of the
    # channel went out. Now it is left pending in the outbox, named in an error line
    ops = await Receiver().start()
    store = SilenceStore(redis)
    await store.add(Matchers(symbol="SPY", channel="ops"), 3600, comment="maintenance")
    await redis.set(keys.SILENCED, "not a stream")
    d = Dispatcher(
        redis, make_config({"ops": {"type": "webhook", "url": ops.url}}, redis_url),
        consumer="t1", silences=store,
    )  # fmt: skip
    await d.start()
    try:
        await enqueue(redis, alert(1, "SPY"), ["ops"], poke=[d])
        for i in range(2, 5):
            await enqueue(redis, alert(i, "QQQ"), ["ops"], poke=[d])
        await ops.wait_for(3)
        assert sorted(ops.ids()) == sorted(alert(i, "QQQ").id for i in range(2, 5))
        pending = await redis.xpending_range(
            keys.outbox("SPY"), keys.notify_group("ops"), "-", "+", 10
        )
        assert len(pending) == 1  # the silenced one, not lost: claimed again after claim_idle
        # and /healthz says why, until the key is a stream again
        want = f"{keys.SILENCED} holds another type than a stream: silenced alerts wait"
        assert (await d.health())["ops"]["blocked"] == [want]
    finally:
        await d.stop()
        await ops.stop()


@pytest.mark.parametrize("key", [keys.SILENCES, keys.SILENCES_VERSION])
async def test_silence_keys_of_another_type_neither_stop_delivery_nor_loop(
    redis: aioredis.Redis, redis_url: str, key: str
) -> None:
    # gex:silences (or its version key) made another type by hand: the delivery's silence
    # check cannot tell, so it delivers with a warning (_silences_of); but a new alert's check,
    # which rides with its sent marker's (check_many_with), raised WRONGTYPE out of the flush:
    # tried again every 0.5 s ('outbox unavailable'), nothing of the channel ever delivered
    from structlog.testing import capture_logs

    ops = await Receiver().start()
    store = SilenceStore(redis)
    await redis.rpush(key, "not a hash, nor a string")
    channels = {"ops": {"type": "webhook", "url": ops.url}}
    d = Dispatcher(redis, make_config(channels, redis_url), consumer="t1", silences=store)
    with capture_logs() as logs:
        await d.start()
        try:
            for i in range(3):
                await enqueue(redis, alert(i), ["ops"], poke=[d])
            await ops.wait_for(3)
            assert sorted(ops.ids()) == sorted(alert(i).id for i in range(3))
        finally:
            await d.stop()
            await ops.stop()
    assert not [e for e in logs if e.get("event") == "outbox unavailable"]
    assert [e for e in logs if e.get("event") == "silence check failed; delivering"]
