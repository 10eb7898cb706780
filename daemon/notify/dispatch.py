"""The delivery pipeline, one task per channel:
read (own PEL first, then new entries, then XAUTOCLAIM of dead consumers' entries)
→ route (entries not for this channel are acked at once) → min_severity filter → sent-marker
check → group window → rate limit → send → ack + marker | retry with backoff | dead letter.

A channel handles its outbox head first: while its head is in backoff (receiver down, 429),
later alerts of that channel wait behind it instead of hammering a receiver that is failing,
and they arrive in order once it is back. Channels never wait for each other.
Everything held in memory is still pending in Redis, so a crash or a stop loses nothing: the
next run re-reads this consumer's PEL (same consumer name) or another daemon claims it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from gex_alertd import redaction
from gex_alertd.config import (
    ChannelConfig,
    Config,
    ConsoleChannel,
    EmailChannel,
    SlackChannel,
    WebhookChannel,
)
from gex_alertd.model import AlertEvent, iso_utc
from gex_alertd.notify.base import (
    SEVERITY_RANK,
    DeliveryOutcome,
    Notifier,
    Ok,
    Permanent,
    Retry,
    describe_exc,
    retry,
)
from gex_alertd.notify.outbox import Entry, Outbox, trim
from gex_alertd.notify.silences import Silence
from gex_alertd.ops import metrics

log = structlog.get_logger()

# which silence (if any) holds each alert for a channel: SilenceStore.check_many
SilenceCheck = Callable[[Sequence[AlertEvent], str], Awaitable[list[Silence | None]]]

READ_COUNT = 100  # entries per XREADGROUP
MAX_BUFFER = 1000  # entries held in memory per channel; the rest wait unread in Redis
MAX_GROUP = 100  # alerts per grouped message
BLOCK_S = 0.25  # XREADGROUP BLOCK; also bounds how long stop() waits for a reader
STATS_EVERY_S = 5.0
TRIM_EVERY_S = 60.0


def default_consumer() -> str:
    """Stable across restarts of the same daemon, so its own PEL is found again."""
    return f"{socket.gethostname()}:{os.environ.get('GEX_ALERTD_CONSUMER', 'main')}"


def build_notifier(name: str, cfg: ChannelConfig) -> Notifier:
    if isinstance(cfg, WebhookChannel):
        from gex_alertd.notify.webhook import WebhookNotifier

        return WebhookNotifier(name, cfg)
    if isinstance(cfg, SlackChannel):
        from gex_alertd.notify.slack import SlackNotifier

        return SlackNotifier(name, cfg)
    if isinstance(cfg, EmailChannel):
        from gex_alertd.notify.email import EmailNotifier

        return EmailNotifier(name, cfg)
    if isinstance(cfg, ConsoleChannel):
        from gex_alertd.notify.console import ConsoleNotifier

        return ConsoleNotifier(name, cfg)
    raise TypeError(f"unknown channel type {type(cfg).__name__}")


def sample_alert(channel: str) -> AlertEvent:
    now = datetime.now(UTC)
    return AlertEvent(
        id=f"test-{channel}-{int(now.timestamp() * 1000)}",
        rule="notify-test",
        type="flip_cross",
        symbol="SPY",
        expiry=None,
        severity="warning",
        as_of=iso_utc(now),
        fired_at=iso_utc(now),
        summary="TEST: SPY crossed above the gamma flip 512.40 → 513.10 (sample alert)",
        details={"direction": "up", "spot": 513.1, "flip": 512.4, "previous_flip": 511.9,
                 "net_gex": -1.25e9},
    )  # fmt: skip


def backoff(attempt: int, base: float, cap: float) -> float:
    """Exponential with "equal jitter": never less than half the step, never in lockstep."""
    step = min(cap, base * (2 ** max(0, attempt - 1)))
    return step / 2 + random.uniform(0, step / 2)


class TokenBucket:
    """Send budget; `burst` 1 means strictly one send per 1/rate seconds."""

    def __init__(self, rate: float, burst: float = 1.0) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = time.monotonic()

    def _fill(self, now: float) -> None:
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def ready_at(self) -> float:
        now = time.monotonic()
        self._fill(now)
        return now if self.tokens >= 1 else now + (1 - self.tokens) / self.rate

    def take(self) -> None:
        self._fill(time.monotonic())
        self.tokens -= 1

    def hold(self, seconds: float) -> None:
        """The receiver said 429: spend the budget for that long."""
        self._fill(time.monotonic())
        self.tokens = min(self.tokens, 1 - seconds * self.rate)


class _Held(msgspec.Struct):
    entry: Entry
    event: AlertEvent
    seen: float  # monotonic time it entered the buffer


class ChannelWorker:
    def __init__(
        self,
        name: str,
        cfg: ChannelConfig,
        notifier: Notifier,
        outbox: Outbox,
        limiter: TokenBucket | None,
        claim_idle: float,
        silences: SilenceCheck | None = None,
    ) -> None:
        self.name = name
        self.silences = silences
        self.cfg = cfg
        self.notifier = notifier
        self.outbox = outbox
        self.limiter = limiter
        self.claim_idle = claim_idle
        self.buffer: dict[str, _Held] = {}
        # sent OK, marker + XACK not yet written: the recorder task writes them (retrying while
        # Redis is away) and flush() waits for it before the next send
        self.unrecorded: dict[str, str] = {}  # entry id -> alert id
        self._recorded = asyncio.Event()
        self._to_record = asyncio.Event()
        self.stopping = asyncio.Event()
        self.retry_at = 0.0
        self.last_flush = -1e18
        self.last_error: str | None = None
        self.sent = 0
        self.dead = 0
        self.log = log.bind(channel=name)
        self.grouping = cfg.group_wait > 0
        self.min_rank = SEVERITY_RANK.get(cfg.min_severity, 0)

    # --- reading -----------------------------------------------------------------------

    async def admit(self, entries: Sequence[Entry]) -> None:
        skip: list[str] = []
        broken: list[Entry] = []
        candidates: list[Entry] = []
        for e in entries:
            if e.entry_id in self.buffer or e.entry_id in self.unrecorded:
                continue
            if e.problem == "entry deleted from the stream" or self.name not in e.channels:
                skip.append(e.entry_id)
            elif e.event is None:
                broken.append(e)
            elif SEVERITY_RANK.get(e.event.severity, 0) < self.min_rank:
                skip.append(e.entry_id)
                metrics.ALERTS_SENT.labels(self.name, "filtered").inc()
            else:
                candidates.append(e)
        done = await self.outbox.sent_already([e.alert_id for e in candidates])
        now = time.monotonic()
        for e, sent in zip(candidates, done, strict=True):
            if sent:  # delivered before a crash; the XACK was what got lost
                skip.append(e.entry_id)
                metrics.ALERTS_SENT.labels(self.name, "duplicate_skipped").inc()
            else:
                assert e.event is not None
                self.buffer[e.entry_id] = _Held(e, e.event, now)
        await self.outbox.ack(skip)
        for e in broken:
            await self._dead([e], e.problem or "unreadable entry", 0)

    # --- scheduling ----------------------------------------------------------------------

    def due_at(self) -> float | None:
        if not self.buffer:
            return None
        t = self.retry_at
        if self.limiter is not None:
            t = max(t, self.limiter.ready_at())
        if self.grouping and not self.stopping.is_set():
            first = min(h.seen for h in self.buffer.values())
            t = max(t, first + self.cfg.group_wait, self.last_flush + self.cfg.group_interval)
        return t

    async def run(self) -> None:
        recorder = asyncio.create_task(self._recorder(), name=f"notify:{self.name}:ack")
        try:
            await self._run()
            await self._until_recorded()  # drain: write what was sent before returning
        finally:
            recorder.cancel()
            await asyncio.gather(recorder, return_exceptions=True)

    async def _until_recorded(self) -> None:
        while self.unrecorded:
            self._recorded.clear()
            self._to_record.set()
            await self._recorded.wait()

    async def _recorder(self) -> None:
        while True:
            await self._to_record.wait()
            self._to_record.clear()
            batch = list(self.unrecorded.items())
            if not batch:
                continue
            try:
                await self.outbox.mark_sent(batch)
            except (RedisError, OSError) as exc:
                # keep them: a resend is what we must avoid, so retry the write until it lands
                self.log.warning("could not record deliveries", error=describe_exc(exc))
                await asyncio.sleep(0.5)
                self._to_record.set()
                continue
            for eid, _ in batch:
                self.unrecorded.pop(eid, None)
            self._recorded.set()

    async def _run(self) -> None:
        self.log.debug("channel worker started", consumer=self.outbox.consumer)
        recovered = False
        next_claim = 0.0
        next_touch = time.monotonic() + self.claim_idle / 3
        while True:
            try:
                if not recovered:
                    own = await self.outbox.read_own_pending()
                    if own:
                        self.log.info("redelivering own pending entries", count=len(own))
                    await self.admit(own)
                    recovered = True
                if self.stopping.is_set() and not self.buffer:
                    # drain: alerts committed before the stop but not read yet go out now;
                    # the caller's timeout bounds this, and what is left stays in Redis
                    more = await self.outbox.read_new(READ_COUNT, None)
                    if not more:
                        return
                    await self.admit(more)
                    continue
                now = time.monotonic()
                if not self.stopping.is_set() and now >= next_claim:
                    claimed = await self.outbox.autoclaim(self.claim_idle)
                    if claimed:
                        self.log.info("claimed stuck entries", count=len(claimed))
                    await self.admit(claimed)
                    next_claim = now + max(0.5, self.claim_idle / 2)
                if now >= next_touch:
                    await self.outbox.touch(list(self.buffer))
                    next_touch = now + max(0.2, self.claim_idle / 3)
                due = self.due_at()
                if due is not None and due <= time.monotonic():
                    await self.flush()
                    continue
                wait = BLOCK_S if due is None else min(BLOCK_S, due - time.monotonic())
                if self.stopping.is_set() or len(self.buffer) >= MAX_BUFFER:
                    await asyncio.sleep(max(0.001, wait))
                else:
                    block_ms = max(1, int(wait * 1000))
                    await self.admit(await self.outbox.read_new(READ_COUNT, block_ms))
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                # Redis away: keep what we hold, try again; nothing is acked meanwhile
                self.last_error = describe_exc(exc)
                self.log.warning("outbox unavailable", error=self.last_error)
                await asyncio.sleep(0.5)

    # --- sending -------------------------------------------------------------------------

    async def _without_silenced(self, batch: list[_Held]) -> list[_Held]:
        """Alerts a silence holds for this channel are recorded as silenced and acked, not
        sent. Checked right before the send, so a silence added while an alert waits in a
        group window or a backoff still applies."""
        if self.silences is None:
            return batch
        found = await self.silences([h.event for h in batch], self.name)
        held = [(h, s) for h, s in zip(batch, found, strict=True) if s is not None]
        if not held:
            return batch
        await self.outbox.record_silenced([(h.entry, s) for h, s in held])
        for h, s in held:
            self.buffer.pop(h.entry.entry_id, None)
            self.log.info("alert silenced", alert_id=h.entry.alert_id, silence=s.id)
        metrics.ALERTS_SENT.labels(self.name, "silenced").inc(len(held))
        return [h for h, s in zip(batch, found, strict=True) if s is None]

    async def flush(self) -> None:
        held = list(self.buffer.values())
        batch = held[:MAX_GROUP] if self.grouping else held[:1]
        batch = await self._without_silenced(batch)
        if not batch:
            return
        if self.limiter is not None:
            self.limiter.take()
        self.last_flush = time.monotonic()
        outcome = await self.deliver([h.event for h in batch])
        alert_ids = [h.entry.alert_id for h in batch]
        if isinstance(outcome, Ok):
            for h in batch:
                self.buffer.pop(h.entry.entry_id, None)
            for h in batch:
                self.unrecorded[h.entry.entry_id] = h.entry.alert_id
            # the sent marker is durable before the next send, so a crash re-sends at most the
            # alert that was in flight (same webhook-id), never a run of already-sent ones
            await self._until_recorded()
            self.retry_at = 0.0
            self.sent += len(batch)
            metrics.ALERTS_SENT.labels(self.name, "ok").inc(len(batch))
            self.log.debug("sent", alert_id=alert_ids[0], count=len(batch))
            return
        self.last_error = outcome.reason
        # Redis first, then forget: if a write fails the entries stay held and are tried again
        if isinstance(outcome, Permanent):
            attempts = await self.outbox.bump_attempts(alert_ids)
            await self._dead([h.entry for h in batch], outcome.reason, max(attempts))
            for h in batch:
                self.buffer.pop(h.entry.entry_id, None)
            return
        assert isinstance(outcome, Retry)
        if outcome.throttled:
            attempts = [0] * len(batch)
        else:
            attempts = await self.outbox.bump_attempts(alert_ids)
        spent = [h for h, n in zip(batch, attempts, strict=True) if n >= self.cfg.max_attempts]
        if spent:
            reason = f"gave up after {self.cfg.max_attempts} attempts: {outcome.reason}"
            await self._dead([h.entry for h in spent], reason, self.cfg.max_attempts)
            for h in spent:
                self.buffer.pop(h.entry.entry_id, None)
        delay = (
            max(outcome.after, 0.05)  # honoured; the floor keeps "Retry-After: 0" from spinning
            if outcome.after is not None
            else backoff(max(1, *attempts), self.cfg.retry_base_s, self.cfg.retry_max_s)
        )
        if outcome.after is not None and self.limiter is not None:
            self.limiter.hold(outcome.after)
        self.retry_at = time.monotonic() + delay
        kind = "throttled" if outcome.throttled else "retry"
        metrics.ALERTS_SENT.labels(self.name, kind).inc(len(batch))
        self.log.warning(
            "delivery failed, will retry",
            alert_id=alert_ids[0],
            attempt=max(attempts),
            retry_in_s=round(delay, 3),
            reason=outcome.reason,
        )

    async def deliver(self, events: list[AlertEvent]) -> DeliveryOutcome:
        try:
            return await self.notifier.send(events)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a notifier bug must not kill the channel; retry later
            self.log.error("notifier raised", error=describe_exc(exc))
            return retry(describe_exc(exc))

    async def _dead(self, entries: list[Entry], reason: str, attempts: int) -> None:
        reason = redaction.redact(reason)
        await self.outbox.dead_letter(entries, reason, attempts)
        self.dead += len(entries)
        metrics.DEAD_LETTERS.labels(self.name).inc(len(entries))
        metrics.ALERTS_SENT.labels(self.name, "dead").inc(len(entries))
        for e in entries:
            self.log.error("alert dead-lettered", alert_id=e.alert_id, reason=reason)


class Dispatcher:
    """Owns one ChannelWorker per configured channel."""

    def __init__(
        self,
        redis: aioredis.Redis,
        cfg: Config,
        *,
        consumer: str | None = None,
        silences: SilenceCheck | None = None,
    ) -> None:
        self.redis = redis
        self.silences = silences
        self.cfg = cfg
        self.consumer = consumer or default_consumer()
        self.workers: dict[str, ChannelWorker] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self._limiters: dict[str, TokenBucket] = {}
        self._stats_task: asyncio.Task[None] | None = None
        self._closing = asyncio.Event()

    def _limiter(self, name: str, notifier: Notifier, cfg: ChannelConfig) -> TokenBucket | None:
        if cfg.rate_per_s is None:
            return None
        key = getattr(notifier, "rate_key", f"channel:{name}")
        bucket = self._limiters.get(key)
        if bucket is None or bucket.rate != cfg.rate_per_s:
            bucket = self._limiters[key] = TokenBucket(cfg.rate_per_s)
        return bucket

    async def _start_channel(self, name: str, ch: ChannelConfig) -> None:
        notifier = build_notifier(name, ch)
        outbox = Outbox(self.redis, name, self.consumer, self.cfg.outbox.dedup_ttl)
        await outbox.ensure_group()
        worker = ChannelWorker(
            name,
            ch,
            notifier,
            outbox,
            self._limiter(name, notifier, ch),
            self.cfg.outbox.claim_idle,
            self.silences,
        )
        self.workers[name] = worker
        self.tasks[name] = asyncio.create_task(self._guard(worker), name=f"notify:{name}")

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
        """Create every channel's group, then spawn one delivery task per channel.
        Call it before anything commits alerts, so every alert finds its group."""
        for name, ch in self.cfg.channels.items():
            await self._start_channel(name, ch)
        self._closing.clear()
        self._stats_task = asyncio.create_task(self._stats_loop(), name="notify:stats")

    async def _stop_channels(self, names: list[str], drain_timeout: float) -> None:
        for n in names:
            self.workers[n].stopping.set()
        tasks = [self.tasks[n] for n in names]
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=max(0.0, drain_timeout))
            for t in pending:  # undelivered entries stay pending in Redis for the next run
                t.cancel()
            if pending:  # bounded: a cancel swallowed inside a Redis call must not hang stop()
                await asyncio.wait(pending, timeout=5)
        for n in names:
            worker = self.workers.pop(n)
            self.tasks.pop(n)
            if worker.buffer:
                worker.log.warning("left undelivered for the next run", pending=len(worker.buffer))
            await worker.notifier.aclose()

    async def stop(self, drain_timeout: float | None = None) -> None:
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
        self.cfg = cfg
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
        sent/dead counts of this process, last error (redacted). Also updates the gauges."""
        out: dict[str, dict[str, Any]] = {}
        for name, w in list(self.workers.items()):
            pending, lag = await w.outbox.stats()
            metrics.OUTBOX_PENDING.labels(name).set(pending)
            metrics.OUTBOX_LAG.labels(name).set(lag)
            out[name] = {
                "pending": pending,
                "lag_s": round(lag, 3),
                "buffered": len(w.buffer),
                "sent": w.sent,
                "dead": w.dead,
                "retrying": w.retry_at > time.monotonic(),
                "last_error": w.last_error,
            }
        return out

    async def trim(self) -> str | None:
        """Drop outbox entries every channel is done with, once older than the retention."""
        keep = self.cfg.redis.retention if self.cfg.redis.retention is not None else 7 * 86400.0
        return await trim(self.redis, self.cfg.channels, keep)

    async def _stats_loop(self) -> None:
        next_trim = time.monotonic() + TRIM_EVERY_S
        while not self._closing.is_set():
            try:
                await self.health()
                if time.monotonic() >= next_trim:
                    next_trim = time.monotonic() + TRIM_EVERY_S
                    await self.trim()
            except (RedisError, OSError) as exc:
                log.warning("outbox stats unavailable", error=describe_exc(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), STATS_EVERY_S)
