"""410 Gone: the channel is disabled loudly (operator callback, log, metric, health) and its
alerts wait in the outbox instead of being dead-lettered one by one."""

from __future__ import annotations

import redis.asyncio as aioredis
from aiohttp import web
from structlog.testing import capture_logs

from gex_alertd import keys
from gex_alertd.notify.dispatch import Dispatcher
from gex_alertd.ops import metrics
from tests.notify.support import Receiver, alert, enqueue, make_config
from tests.support.wait import eventually


async def test_a_gone_receiver_disables_its_channel_and_loses_nothing(
    redis: aioredis.Redis, redis_url: str
) -> None:
    async def gone(_n: int, _r: web.Request) -> web.Response:
        return web.Response(status=410, text="webhook deleted")

    old, other, new = (
        await Receiver(responder=gone).start(),
        await Receiver().start(),
        await Receiver().start(),
    )
    told: list[tuple[str, str]] = []

    async def on_disabled(channel: str, reason: str) -> None:
        told.append((channel, reason))

    hook = {"type": "webhook", "retry_base_s": 0.05, "retry_max_s": 0.1}
    cfg = make_config(
        {"ops": {**hook, "url": old.url}, "other": {**hook, "url": other.url}}, redis_url
    )
    d = Dispatcher(redis, cfg, consumer="t1", on_channel_disabled=on_disabled)
    with capture_logs() as logs:
        await d.start()
        try:
            for i in range(3):
                await enqueue(redis, alert(i), ["ops", "other"], poke=[d])
            await other.wait_for(3)  # the other channel is not held up

            async def disabled() -> bool:
                return bool((await d.health())["ops"]["disabled"])

            await eventually(disabled, "ops disabled")
            h = await d.health()
            assert h["ops"]["disabled"] == "HTTP 410: webhook deleted"
            assert h["ops"]["pending"] == 3 and h["ops"]["dead"] == 0
            assert told == [("ops", "HTTP 410: webhook deleted")]
            assert metrics.CHANNEL_DISABLED.labels("ops")._value.get() == 1
            assert await redis.xlen(keys.DEAD) == 0
            assert len(old.hits) == 1  # one try, not one per alert

            # the operator points the channel at the new URL and reloads: nothing was lost
            fixed = make_config(
                {"ops": {**hook, "url": new.url}, "other": {**hook, "url": other.url}}, redis_url
            )
            await d.reload(fixed)
            await new.wait_for(3)
            assert new.ids() == [alert(i).id for i in range(3)]
            assert metrics.CHANNEL_DISABLED.labels("ops")._value.get() == 0
            assert (await d.health())["ops"]["disabled"] is None
        finally:
            await d.stop()
            for r in (old, other, new):
                await r.stop()
    [line] = [e for e in logs if str(e["event"]).startswith("channel disabled")]
    assert line["log_level"] == "error" and line["channel"] == "ops"


async def test_the_daemon_raises_an_operator_alert_and_healthz_says_not_ok(
    redis: aioredis.Redis, redis_url: str
) -> None:
    from gex_alertd import config as config_mod
    from gex_alertd.app import Daemon
    from gex_alertd.model import decode_alert

    async def gone(_n: int, _r: web.Request) -> web.Response:
        return web.Response(status=410)

    dead_hook, pager = await Receiver(responder=gone).start(), await Receiver().start()
    tree = {
        "redis": {"url": redis_url},
        "watch": {"symbols": ["SPY"]},
        "channels": {
            "ops": {"type": "webhook", "url": dead_hook.url},
            "pager": {"type": "webhook", "url": pager.url},
        },
        "ops": {"listen": None, "operator_channels": ["ops", "pager"]},
    }
    daemon = Daemon(config_mod.parse(tree, "test"))
    await daemon._start_dispatcher()
    try:
        await enqueue(redis, alert(1), ["ops"], poke=[daemon.dispatcher])
        await pager.wait_for(1)
        [event] = [decode_alert(h.body) for h in pager.hits]
        assert event.rule == "channel-gone" and event.severity == "critical"
        assert event.details == {"channel": "ops", "reason": "HTTP 410"}
        health = await daemon.health()
        assert health["ok"] is False and health["channels_disabled"] == ["ops"]
        assert "channel ops disabled: HTTP 410" in health["problems"]
        assert health["outbox"]["ops"]["pending"] == 1  # the alert itself still waits
    finally:
        await daemon.dispatcher.stop()
        await daemon.redis.aclose()
        await dead_hook.stop()
        await pager.stop()
