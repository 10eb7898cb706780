"""Live updates for every open page from ONE Redis reader.

One task reads the streams the open pages need: a symbol page's snapshot stream and its
symbol's outbox (`gex:{SYM}:alerts`); while an index page is open, every watched symbol's
and the operator outbox. It builds each event once (decoding a strike block once, whatever
the number of pages) and hands the same encoded Server-Sent-Events frame to every subscriber
that wants it: a symbol page gets its own symbol's snapshots (full profile) and alerts, the
index gets every symbol's scalars and every alert. Each subscriber has a bounded queue; one
that falls behind is dropped (its queue closed; the browser's EventSource reconnects and
reloads the history) and never slows the reader or the others. The reader runs only while
someone listens.

A symbol's streams share its `{SYM}` hash slot and are read together
(`connections.read_slot_groups`): on one node one `XREAD BLOCK` over every stream; on Redis
Cluster one `XREAD` per symbol, pipelined, without BLOCK, every CLUSTER_POLL_S while nothing
is new.

Never writes to Redis.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from gex_alertd import keys
from gex_alertd.connections import (
    REDIS_DOWN,
    describe_redis_error,
    is_cluster,
    key_types,
    read_slot_groups,
    stream_tops,
)
from gex_alertd.redis_errors import is_wrongtype
from gex_alertd.stopping import cancel_and_wait
from gex_alertd.web import history

log = structlog.get_logger(__name__)

BLOCK_MS = 2000  # under the client's 5 s socket timeout
STOP_TIMEOUT_S = 10.0  # past a BLOCK that swallowed the cancel, and a reconnect
QUEUE_FRAMES = 64  # per subscriber: ~16 min of one symbol at 15 s before it counts as stuck
MAX_SUBSCRIBERS = 256
READ_COUNT = 500  # entries per stream per XREAD
CLUSTER_POLL_S = 1.0  # on a cluster: the pause after a round that found nothing new
REFUSED_RECHECK_S = 30.0  # how often a key left out for its type is looked at again
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
        self.rounds = 0  # reads done (each from the cursors of the one before)
        # stream key -> its type: a watched key made another type by hand failed the one XREAD
        # over every stream, round after round, and no page got anything; left out instead,
        # looked at again every REFUSED_RECHECK_S
        self.refused: dict[str, str] = {}
        self.recheck_at = 0.0  # monotonic

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
        self._subs.clear()  # the reader's loop ends at its next turn, if a cancel is swallowed
        if self._task is not None:
            left = await cancel_and_wait([self._task], timeout_s=STOP_TIMEOUT_S)
            if left:
                log.warning("live page reader did not stop", timeout_s=STOP_TIMEOUT_S)
            self._task = None

    async def _read(self) -> None:
        cursors: dict[str, str] = {}
        delay = 0.5
        cluster = is_cluster(self._redis)
        streams: dict[str, str | None] = {}
        while self._subs:
            try:
                await self._recheck_refused()
                groups = {
                    sym: {k: t for k, t in group.items() if k not in self.refused}
                    for sym, group in self._streams().items()
                }
                streams = {k: t for group in groups.values() for k, t in group.items()}
                # a stream no page wants any more is forgotten: a page opened later starts
                # from then, not with what was written meanwhile
                cursors = {k: v for k, v in cursors.items() if k in streams}
                new = [k for k in streams if k not in cursors]
                if new:
                    cursors.update(await stream_tops(self._redis, new))
                reply = await read_slot_groups(
                    self._redis,
                    [{k: cursors[k] for k in group} for group in groups.values()],
                    count=READ_COUNT,
                    block_ms=BLOCK_MS,
                )
                delay = 0.5
                self.rounds += 1
            except (*REDIS_DOWN, RedisError) as exc:  # down, or refusing
                if is_wrongtype(exc) and await self._refuse(list(streams)):
                    continue  # read again at once without it
                log.warning("live page reader: redis unavailable", error=describe_redis_error(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            for raw_key, batch in reply:
                key = raw_key.decode()
                for entry_id, fields in batch:
                    cursors[key] = entry_id.decode()
                    self._publish(streams[key], entry_id, fields)
            if not reply and (cluster or not streams):  # no BLOCK waited for us
                await asyncio.sleep(CLUSTER_POLL_S)

    async def _refuse(self, names: list[str]) -> bool:
        """Leave out the keys among `names` that hold another type than a stream, each named
        in one error line; whether there was any (False: the WRONGTYPE came from elsewhere, or
        their types could not be read)."""
        try:
            types = await key_types(self._redis, names)
        except (*REDIS_DOWN, RedisError):
            return False
        wrong = {k: t for k, t in types.items() if t not in ("stream", "none")}
        for key, kind in wrong.items():
            log.error(
                "live page: key holds another type than a stream; left out until it is one",
                key=key,
                type=kind,
            )
        self.refused.update(wrong)
        return bool(wrong)

    async def _recheck_refused(self) -> None:
        """The refused keys that are streams again (or gone) are read again."""
        now = asyncio.get_running_loop().time()
        if not self.refused or now < self.recheck_at:
            return
        self.recheck_at = now + REFUSED_RECHECK_S
        types = await key_types(self._redis, sorted(self.refused))
        for key, kind in types.items():
            if kind in ("stream", "none"):
                del self.refused[key]

    def _streams(self) -> dict[str, dict[str, str | None]]:
        """symbol -> {stream key -> target key (None for the outbox)}: the streams the open
        pages need, by symbol (one slot each). An index page wants every watched symbol and
        the operator outbox."""
        open_keys = {sub.key for sub in self._subs}
        index = None in open_keys
        out: dict[str, dict[str, str | None]] = {}
        for sym, exp in self._targets():
            target = target_key(sym, exp)
            if index or target in open_keys:
                group = out.setdefault(sym, {keys.outbox(sym): None})
                group[keys.snap(sym, exp)] = target
        if index:
            out[keys.OPS_SYMBOL] = {keys.outbox(keys.OPS_SYMBOL): None}
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
