"""Replaying stored streams: all in this process, or one stream per worker process when there
are many snapshots (the rules are CPU-bound and streams are independent)."""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

from gex_alertd.config import RedisConfig
from gex_alertd.connections import open_client
from gex_alertd.history import iter_stream_views
from gex_alertd.replayer import Replayer, Stats, StreamKey
from gex_alertd.rules.base import RuleBase
from gex_alertd.rules.engine import Emitted
from gex_alertd.settled import SettledProfiles

# below this many stored snapshots the start-up of worker processes costs more than it saves
PARALLEL_ABOVE = 20_000


@dataclass
class StreamResult:
    emitted: list[Emitted]
    stats: Stats
    bad: list[tuple[str, str]]


async def replay_streams(
    redis_url: str | RedisConfig,
    rules: list[RuleBase],
    targets: list[StreamKey],
    start_ms: int | None,
    end_ms: int | None,
    on_progress: Callable[[int], None] | None = None,
    columns_only: bool | None = None,
) -> StreamResult:
    """Replay whole streams (in order, state carried across pages) and collect the alerts.
    `columns_only`: decode strike columns, not rows (None: whenever the rules allow it; False
    forces full rows, the reference the fast path is tested against)."""
    replayer = Replayer(rules)
    if columns_only is None:
        columns_only = replayer.columns_only
    result = StreamResult([], replayer.stats, [])

    def bad(where: str, msg: str) -> None:
        replayer.stats.bad += 1
        result.bad.append((where, msg))

    redis = open_client(redis_url, client_name="gex-alertd-replay")
    settled = SettledProfiles(redis, None)  # what the live path stored: never fetched here
    try:
        n = 0
        async for snap, expiry, view in iter_stream_views(
            redis, targets, start_ms, end_ms, bad, columns_only=columns_only
        ):
            if replayer.engine.needs_settled(snap.symbol):
                await settled.attach(snap, expiry)
            result.emitted += replayer.feed(snap, expiry, view)
            n += 1
            if n % 1000 == 0 and on_progress is not None:
                on_progress(1000)
        if on_progress is not None:
            on_progress(n % 1000)
    finally:
        await redis.aclose()
    return result


_worker_queue: Any = None


def _worker_init(queue: Any) -> None:
    global _worker_queue
    _worker_queue = queue


def _worker(
    redis_url: str | RedisConfig,
    rules: list[RuleBase],
    target: StreamKey,
    start_ms: int | None,
    end_ms: int | None,
) -> StreamResult:
    """One stream in a worker process (the rules are CPU-bound; streams are independent)."""
    return asyncio.run(
        replay_streams(redis_url, rules, [target], start_ms, end_ms, _worker_queue.put)
    )


async def replay_parallel(
    redis_url: str | RedisConfig,
    rules: list[RuleBase],
    targets: list[StreamKey],
    start_ms: int | None,
    end_ms: int | None,
    jobs: int,
    advance: Callable[[int], None],
) -> list[StreamResult]:
    ctx = multiprocessing.get_context("spawn")  # no fork of a running event loop
    queue = ctx.Queue()
    with ProcessPoolExecutor(
        jobs, mp_context=ctx, initializer=_worker_init, initargs=(queue,)
    ) as pool:
        futures = [
            asyncio.wrap_future(pool.submit(_worker, redis_url, rules, t, start_ms, end_ms))
            for t in targets
        ]
        while not all(f.done() for f in futures):
            await asyncio.sleep(0.1)
            while not queue.empty():
                advance(queue.get())
        return [await f for f in futures]  # in target order: the output is deterministic
