"""A reload and a stop that overlap (`systemctl reload` then `stop`) both stop a changed
channel: the second must find it stopped, not fail (a KeyError ended the daemon's stop with
exit status 1: tests/ops/test_signals.py::test_sigterm_during_a_reload_stops_once_and_exits_0
caught it now and then)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as aioredis

from gex_alertd.notify.dispatch import Dispatcher
from tests.notify.support import Receiver, make_config


def hook(url: str, **kw: object) -> dict[str, object]:
    return {"type": "webhook", "url": url, "retry_base_s": 0.05, "retry_max_s": 0.2, **kw}


@asynccontextmanager
async def _running(
    redis: aioredis.Redis, redis_url: str
) -> AsyncIterator[tuple[Dispatcher, Receiver]]:
    """A started dispatcher with one webhook channel `ops` to a receiver; both stopped after."""
    rx = await Receiver().start()
    d = Dispatcher(redis, make_config({"ops": hook(rx.url)}, redis_url), consumer="t1")
    await d.start()
    try:
        yield d, rx
    finally:
        await d.stop()
        await rx.stop()


async def test_a_reload_and_a_stop_of_the_same_channel_overlap(
    redis: aioredis.Redis, redis_url: str
) -> None:
    async with _running(redis, redis_url) as (d, rx):
        changed = make_config({"ops": hook(rx.url, timeout_s=9)}, redis_url)
        results = await asyncio.gather(d.reload(changed), d.stop(), return_exceptions=True)
        assert [r for r in results if isinstance(r, BaseException)] == []
        assert d.workers == {} and d.tasks == {}  # and the reload started nothing behind it


async def test_a_reload_adding_channels_starts_none_once_a_stop_began(
    redis: aioredis.Redis, redis_url: str
) -> None:
    # the reload looked at the stop once, before its channels' starts: each start awaits its
    # groups (a Redis round trip), the stop took its list of workers meanwhile, and the
    # channels started after that were left running behind the stop
    async with _running(redis, redis_url) as (d, rx):
        more = {f"p{i}": hook(rx.url) for i in range(5)}
        added = make_config({"ops": hook(rx.url), **more}, redis_url)
        results = await asyncio.gather(d.reload(added), d.stop(), return_exceptions=True)
        assert [r for r in results if isinstance(r, BaseException)] == []
        assert d.workers == {} and d.tasks == {}
