"""The Dispatcher: one ChannelWorker (notify/channel_worker.py) per configured channel, started,
stopped, reloaded and reported on together, over one shared set of outbox streams
(notify/streams.py: the owned symbols' outboxes). The per-channel pipeline lives in the worker,
the decision after each attempt in notify/policy.py, the Redis side in notify/outbox.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisClusterException, RedisError

from gex_alertd.config import ChannelConfig, Config
from gex_alertd.connections import REDIS_DOWN, is_cluster
from gex_alertd.notify.base import DeliveryOutcome, Notifier, describe_exc
from gex_alertd.notify.channel_worker import ChannelWorker, OnDisabled, SilenceCheck
from gex_alertd.notify.outbox import (
    Outbox,
    all_streams,
    ensure_groups,
    group_stats,
    is_wrongtype,
    recheck_refused,
    refuse_wrong_types,
    trim,
)
from gex_alertd.notify.registry import build_notifier
from gex_alertd.notify.sample import sample_alert
from gex_alertd.notify.streams import OutboxStreams
from gex_alertd.notify.throttle import TokenBucket
from gex_alertd.ops import metrics
from gex_alertd.stopping import end_tasks

log = structlog.get_logger()

STATS_EVERY_S = 5.0
TRIM_EVERY_S = 60.0
FULL_TRIM_EVERY_S = 3600.0  # every owned stream, not only those acked on since the last trim
SCAN_EVERY_S = 60.0  # look for outboxes no watched symbol names


def default_consumer() -> str:
    """Stable across restarts of the same daemon, so its own PEL is found again."""
    return f"{socket.gethostname()}:{os.environ.get('GEX_ALERTD_CONSUMER', 'main')}"


class Dispatcher:
    """Owns one ChannelWorker per configured channel."""

    def __init__(
        self,
        redis: aioredis.Redis,
        cfg: Config,
        *,
        consumer: str | None = None,
        silences: SilenceCheck | None = None,
        on_channel_disabled: OnDisabled | None = None,
        clock: Callable[[], float] = time.time,
        owns: Callable[[str], bool] | None = None,
    ) -> None:
        """`owns(stream)`: whether this daemon reads that outbox (None: every outbox)."""
        self.redis = redis
        self.cfg = cfg
        self.streams = OutboxStreams(_symbols(cfg), owns, cluster=is_cluster(redis))
        self.consumer = consumer or default_consumer()
        self.silences = silences
        self.on_channel_disabled = on_channel_disabled
        self.clock = clock
        self.workers: dict[str, ChannelWorker] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self._limiters: dict[str, TokenBucket] = {}
        self._stats_task: asyncio.Task[None] | None = None
        self._closing = asyncio.Event()
        # set by stop(): a reload still running then (`systemctl reload` then `stop`) starts
        # no channel behind the stop
        self._stopped = False

    def _limiter(self, notifier: Notifier[Any], cfg: ChannelConfig) -> TokenBucket | None:
        if cfg.rate_per_s is None:
            return None
        key = notifier.rate_key
        bucket = self._limiters.get(key)
        if bucket is None or bucket.rate != cfg.rate_per_s:
            bucket = self._limiters[key] = TokenBucket(cfg.rate_per_s)
        return bucket

    async def _start_channel(self, name: str, ch: ChannelConfig) -> None:
        notifier = build_notifier(name, ch)
        outbox = Outbox(self.redis, name, self.consumer, self.cfg.outbox.dedup_ttl)
        await self._ensure_groups([name])
        if self._stopped:  # a stop began while a reload started it: the stop did not see it
            return
        worker = ChannelWorker(
            name,
            ch,
            notifier,
            outbox,
            self._limiter(notifier, ch),
            self.cfg.outbox.claim_idle,
            self.streams,
            silences=self.silences,
            on_disabled=self.on_channel_disabled,
            clock=self.clock,
        )
        self.workers[name] = worker
        self.tasks[name] = asyncio.create_task(self._guard(worker), name=f"notify:{name}")

    async def _ensure_groups(self, channels: list[str]) -> None:
        """The channels' groups on every known outbox; an outbox key of another type is left
        out (named in an error line), not a WRONGTYPE that stopped the daemon's start. Redis
        away (a reload during an outage) is no reason to keep a channel stopped: a stream gets
        the reader's group when read (Outbox._read), and a writer makes the groups of the
        channels it names before their entry (commit.lua); raised, the reload left the
        channel it had stopped without a worker for good."""
        try:
            try:
                await ensure_groups(self.redis, self.streams.all(), channels)
            except RedisError as exc:
                if not is_wrongtype(exc):
                    raise
                await refuse_wrong_types(self.redis, self.streams, force=True)
                await ensure_groups(self.redis, self.streams.all(), channels)
        except REDIS_DOWN as exc:
            log.warning(
                "could not create the channels' groups now; they are made when read",
                channels=channels,
                error=describe_exc(exc),
            )

    async def _guard(self, worker: ChannelWorker) -> None:
        structlog.contextvars.bind_contextvars(channel=worker.name)  # ops: for library log lines
        while True:
            try:
                await worker.run()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep the channel alive whatever happens
                worker.log.error("channel worker crashed, restarting", error=describe_exc(exc))
                await asyncio.sleep(1.0)

    async def start(self) -> None:
        """Create every channel's group on every known outbox, then spawn one delivery task
        per channel. (Writers create the groups of the channels they name too, see
        commit.lua, so the order of start and first commit does not matter.)"""
        self._stopped = False
        self.streams.add_found(await all_streams(self.redis))
        for name, ch in self.cfg.channels.items():
            await self._start_channel(name, ch)
        self._closing.clear()
        self._stats_task = asyncio.create_task(self._stats_loop(), name="notify:stats")

    async def _stop_channels(self, names: list[str], drain_timeout: float) -> None:
        for n in names:
            self.workers[n].stopping.set()
        # undelivered entries stay pending in Redis for the next run; bounded: a cancel
        # swallowed inside a Redis call must not hang stop()
        await end_tasks([self.tasks[n] for n in names], grace_s=drain_timeout)
        for n in names:
            worker = self.workers.pop(n, None)
            self.tasks.pop(n, None)
            if worker is None:  # stopped meanwhile by an overlapping reload or stop
                continue
            if worker.buffer:
                worker.log.warning("left undelivered for the next run", pending=len(worker.buffer))
            metrics.CHANNEL_DISABLED.labels(n).set(0)  # a restarted channel tries again
            await worker.notifier.aclose()

    async def stop(self, drain_timeout: float | None = None) -> None:
        self._stopped = True
        if self._stats_task is not None:
            # ask first, cancel only as a fallback: a cancel that lands inside a redis-py call
            # can be swallowed there, and the loop would then never end
            self._closing.set()
            _done, pending = await asyncio.wait({self._stats_task}, timeout=STATS_EVERY_S + 1)
            for t in pending:
                t.cancel()
            self._stats_task = None
        timeout = self.cfg.outbox.drain_timeout if drain_timeout is None else drain_timeout
        await self._stop_channels(list(self.workers), timeout)

    async def reload(self, cfg: Config) -> None:
        """Apply a new config: channels added/removed/changed restart, the others keep going."""
        old = self.cfg.channels
        new = cfg.channels
        changed = [n for n in old if n not in new or new[n] != old[n]]
        outbox_changed = cfg.outbox != self.cfg.outbox
        if outbox_changed:
            changed = list(old)
        await self._stop_channels(
            [n for n in changed if n in self.workers], cfg.outbox.drain_timeout
        )
        if self._stopped:  # a stop began meanwhile: nothing starts behind it
            return
        self.cfg = cfg
        self.streams.set_symbols(_symbols(cfg))
        await self._ensure_groups(list(self.workers))
        for name, ch in new.items():
            if name not in self.workers:
                await self._start_channel(name, ch)
        log.info("notify channels reloaded", restarted=sorted(changed))

    async def send_test(self, channel: str) -> DeliveryOutcome:
        """Send a sample alert straight to the channel (not through the outbox)."""
        ch = self.cfg.channels.get(channel)
        if ch is None:
            known = ", ".join(sorted(self.cfg.channels)) or "none"
            raise KeyError(f"unknown channel {channel!r} (channels: {known})")
        worker = self.workers.get(channel)
        if worker is not None:
            return await worker.deliver([sample_alert(channel)])
        notifier = build_notifier(channel, ch)
        try:
            return await notifier.send([sample_alert(channel)])
        finally:
            await notifier.aclose()

    async def health(self) -> dict[str, dict[str, Any]]:
        """Per channel: pending (unacked incl. unread), lag_s (age of the oldest), buffered,
        sent/dead/silenced counts of this process, `disabled` (why, after a 410; else null),
        `blocked` (a stream it must write holds another type), last error (redacted). Also
        updates the gauges."""
        out: dict[str, dict[str, Any]] = {}
        for name, w in list(self.workers.items()):
            pending, lag = await group_stats(self.redis, name, w.active_streams())
            metrics.OUTBOX_PENDING.labels(name).set(pending)
            metrics.OUTBOX_LAG.labels(name).set(lag)
            out[name] = {
                "pending": pending,
                "lag_s": round(lag, 3),
                "buffered": len(w.buffer),
                "sent": w.sent,
                "dead": w.dead,
                "silenced": w.silenced,
                "retrying": w.retry_at > time.monotonic(),
                "disabled": w.disabled,
                "blocked": [f"{k} {why}" for k, why in sorted(w.blocked.items())],
                "last_error": w.last_error,
            }
        return out

    def poke(self, symbol: str) -> None:
        """This process just enqueued alerts on `symbol`'s outbox: the channels read it now."""
        self.streams.poke(symbol)

    async def trim(self, *, full: bool = False) -> int:
        """Drop outbox entries every channel is done with, once older than the retention: on
        the owned streams acked on since the last trim (all owned ones when `full`). Returns
        how many streams were trimmed."""
        keep = self.cfg.redis.retention if self.cfg.redis.retention is not None else 7 * 86400.0
        owned = set(self.streams.owned())
        touched: set[str] = set()
        for w in self.workers.values():
            touched |= w.outbox.acked_streams
            w.outbox.acked_streams = set()
        n = 0
        for stream in sorted(owned if full else touched & owned):
            if await trim(self.redis, stream, self.cfg.channels, keep) is not None:
                n += 1
        return n

    async def _stats_loop(self) -> None:
        next_trim = time.monotonic() + TRIM_EVERY_S
        next_full = time.monotonic() + FULL_TRIM_EVERY_S
        next_scan = time.monotonic() + SCAN_EVERY_S
        while not self._closing.is_set():
            try:
                await self.health()
                now = time.monotonic()
                if now >= next_scan:
                    next_scan = now + SCAN_EVERY_S
                    self.streams.add_found(await all_streams(self.redis))
                if self.streams.refused:
                    await recheck_refused(self.redis, self.streams)
                if now >= next_trim:
                    next_trim = now + TRIM_EVERY_S
                    full = now >= next_full
                    if full:
                        next_full = now + FULL_TRIM_EVERY_S
                    await self.trim(full=full)
            except (RedisError, RedisClusterException, OSError) as exc:
                log.warning("outbox stats unavailable", error=describe_exc(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), STATS_EVERY_S)


def _symbols(cfg: Config) -> list[str]:
    return sorted({t.symbol for t in cfg.watch.entries()})
