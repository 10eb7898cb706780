"""Live updates for every open page from ONE Redis reader.

One task runs `XREAD BLOCK` on every watched snapshot stream and the alert outbox, builds
each event once (decoding a strike block once, whatever the number of pages) and hands the
same encoded Server-Sent-Events frame to every subscriber that wants it: a symbol page gets
its own symbol's snapshots (full profile) and alerts, the index gets every symbol's scalars
and every alert. Each subscriber has a bounded queue; one that falls behind is dropped
(its queue closed; the browser's EventSource reconnects and reloads the history) and never
slows the reader or the others. The reader runs only while someone listens.

Never writes to Redis. On Redis Cluster one XREAD cannot span slots; that layout is not
served here yet.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from gex_alertd import keys
from gex_alertd.connections import REDIS_DOWN, describe_redis_error, entries, read_entries
from gex_alertd.web import history

log = structlog.get_logger(__name__)

BLOCK_MS = 2000  # under the client's 5 s socket timeout
QUEUE_FRAMES = 64  # per subscriber: ~16 min of one symbol at 15 s before it counts as stuck
MAX_SUBSCRIBERS = 256
READ_COUNT = 500  # entries per stream per XREAD
_json = msgspec.json.Encoder()

Targets = Callable[[], Sequence[tuple[str, str | None]]]


def target_key(symbol: str, expiry: str | None) -> str:
    return f"{symbol}:{expiry}" if expiry else symbol


def frame(event: str, data: Any) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + _json.encode(data) + b"\n\n"


class Subscriber:
    """One open page: `key` is a target key (`SPY`, `SPX:2026-05-15`) or None for the index."""

    def __init__(self, key: str | None) -> None:
        self.key = key
        self.symbol = key.split(":", 1)[0] if key else None
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(QUEUE_FRAMES)
        self.dropped = False

    def offer(self, data: bytes) -> None:
        if self.dropped:
            return
        try:
            self.queue.put_nowait(data)
        except asyncio.QueueFull:  # too slow: drop it, never wait for it
            self.close()

    def close(self) -> None:
        """End this page's stream: its writer sees None next."""
        self.dropped = True
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(None)


class Hub:
    def __init__(self, redis: aioredis.Redis, targets: Targets) -> None:
        self._redis = redis
        self._targets = targets
        self._subs: set[Subscriber] = set()
        self._task: asyncio.Task[None] | None = None
        self.frames_built = 0  # events encoded (one per entry read, not per subscriber)

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    def subscribe(self, key: str | None) -> Subscriber:
        if len(self._subs) >= MAX_SUBSCRIBERS:
            raise OverflowError(f"{MAX_SUBSCRIBERS} live pages open already")
        sub = Subscriber(key)
        self._subs.add(sub)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._read(), name="web-live-reader")
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self._subs.discard(sub)

    async def stop(self) -> None:
        for sub in list(self._subs):
            sub.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _cursors(self, keys: list[str]) -> dict[str, str]:
        """The newest entry ID of each stream: the reader starts from now."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.xrevrange(key, count=1)
            tops = await pipe.execute()
        out = {}
        for key, top in zip(keys, tops, strict=True):
            batch = entries(top)
            out[key] = batch[0][0].decode() if batch else "0-0"
        return out

    async def _read(self) -> None:
        cursors: dict[str, str] = {}
        delay = 0.5
        while self._subs:
            try:
                streams = self._streams()
                new = [k for k in streams if k not in cursors]
                if new:
                    cursors.update(await self._cursors(new))
                reply = await self._redis.xread(
                    {k: cursors[k] for k in streams}, block=BLOCK_MS, count=READ_COUNT
                )
                delay = 0.5
            except (*REDIS_DOWN, RedisError) as exc:  # down, or refusing (a cluster: CROSSSLOT)
                log.warning("live page reader: redis unavailable", error=describe_redis_error(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            for raw_key, batch in read_entries(reply):
                key = raw_key.decode()
                for entry_id, fields in batch:
                    cursors[key] = entry_id.decode()
                    self._publish(streams[key], entry_id, fields)

    def _streams(self) -> dict[str, str | None]:
        """Stream key -> target key (None for the outbox)."""
        out: dict[str, str | None] = {
            keys.snap(sym, exp): target_key(sym, exp) for sym, exp in self._targets()
        }
        out[keys.ALERTS] = None
        return out

    def _publish(self, key: str | None, entry_id: bytes, fields: dict[bytes, bytes]) -> None:
        """Build the event of one entry once; `key` is its target key, None for an alert."""
        # a dropped page no longer counts against MAX_SUBSCRIBERS, even while its handler is
        # still stuck writing to a client that stopped reading
        self._subs -= {sub for sub in self._subs if sub.dropped}
        if not self._subs:
            return
        if key is None:
            item = history.alert_item(fields)
            if item is None:
                return
            data = frame("alert", item)
            self.frames_built += 1
            for sub in list(self._subs):
                if sub.key is None or sub.symbol == item["symbol"]:
                    sub.offer(data)
            return
        prof = history.profile(entry_id, fields)
        prof["key"] = key
        full = frame("snapshot", prof)
        brief = frame("summary", {k: v for k, v in prof.items() if k not in history.COLUMN_NAMES})
        self.frames_built += 1
        for sub in list(self._subs):
            if sub.key == key:
                sub.offer(full)
            elif sub.key is None:
                sub.offer(brief)
