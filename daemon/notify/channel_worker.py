"""One channel's delivery loop, one task per channel, over the outbox streams of the symbols
this daemon owns (notify/streams.py):
read (own PEL first, then new entries of poked streams, all owned streams on a sweep, then
XAUTOCLAIM of dead consumers' entries; what it holds is touched by a task of its own)
→ route (entries not for this channel are acked at once) → min_severity filter → sent-marker
check → group window → silence check → rate limit → send → the delivery policy's decision
(notify/policy.py): ack + marker | retry later | dead letter | disable the channel.
Entries read new (`>`: never delivered to this channel's group) have their sent marker checked
in the silence check's round trip instead of one of their own (one node): the marker is then
read later, right before the send, which can only see more of what was sent, and the silences
are read exactly where they always were, by the last round trip before the send.

Order is kept per symbol (per stream), in the order each was read. A channel handles its head
first: while its head is in backoff (receiver down, 429),
later alerts of that channel wait behind it instead of hammering a receiver that is failing,
and they arrive in order once it is back. Channels never wait for each other.
A message, once formed (one alert, or a group), is retried as that same message with the same
`webhook-id` until it is acked or dead: alerts that arrive meanwhile wait for the next one.
Everything held in memory is still pending in Redis, so a crash or a stop loses nothing: the
next run re-reads this consumer's PEL (same consumer name) or another daemon claims it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import msgspec
import structlog
from redis.exceptions import RedisClusterException, RedisError

from gex_alertd import keys, redaction
from gex_alertd.model import AlertEvent, iso_utc
from gex_alertd.notify.base import (
    SEVERITY_RANK,
    DeliveryOutcome,
    Gone,
    Notifier,
    Ok,
    Retry,
    describe_exc,
    retry,
)
from gex_alertd.notify.channel import ChannelBase
from gex_alertd.notify.outbox import Entry, Outbox, refuse_wrong_types
from gex_alertd.notify.policy import (
    Ack,
    DeadLetter,
    DisableChannel,
    RetryLater,
    RetryPolicy,
    Silenced,
    decide,
)
from gex_alertd.notify.silences import Silence
from gex_alertd.notify.streams import OutboxStreams
from gex_alertd.notify.throttle import TokenBucket
from gex_alertd.ops import metrics
from gex_alertd.redis_errors import is_wrongtype
from gex_alertd.stopping import cancel_and_wait

log = structlog.get_logger()

READ_COUNT = 100  # most entries per stream per XREADGROUP (see _read_new)
MAX_BUFFER = 1000  # entries held in memory per channel; the rest wait unread in Redis
MAX_GROUP = 100  # alerts per grouped message
ACTIVE_S = 3600.0  # a stream read from within this long counts in the backlog figures
RECORDER_STOP_S = 5.0  # past a write the cancel landed in (see stopping)
BLOCK_S = 0.25  # longest wait for a poke; also bounds how long stop() waits for a reader


class SilenceCheck(Protocol):
    """Which silence (if any) holds each alert for a channel now: notify.silences.SilenceStore."""

    async def check_many(
        self, events: Sequence[AlertEvent], channel: str
    ) -> list[Silence | None]: ...

    async def check_many_with(
        self, events: Sequence[AlertEvent], channel: str, commands: Sequence[bytes]
    ) -> tuple[list[Silence | None], list[Any]]: ...


# (channel, reason): the channel was disabled (a 410); the daemon raises an operator alert
OnDisabled = Callable[[str, str], Awaitable[None]]


class _Held(msgspec.Struct):
    entry: Entry
    event: AlertEvent
    seen: float  # monotonic time it entered the buffer
    # its sent marker was checked (False: read new, checked right before its first send)
    checked: bool = True


class ChannelWorker:
    def __init__(
        self,
        name: str,
        cfg: ChannelBase,
        notifier: Notifier[Any],
        outbox: Outbox,
        limiter: TokenBucket | None,
        claim_idle: float,
        streams: OutboxStreams,
        *,
        silences: SilenceCheck | None = None,
        on_disabled: OnDisabled | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self.cfg = cfg
        self.notifier = notifier
        self.outbox = outbox
        self.streams = streams
        self.pokes = streams.reader()
        self.limiter = limiter
        self.claim_idle = claim_idle
        self.silences = silences
        self.on_disabled = on_disabled
        self.clock = clock  # wall clock of the retry budget (tests pass a controlled one)
        self.policy = RetryPolicy.of(cfg)
        self.buffer: dict[tuple[str, str], _Held] = {}  # by (stream, entry id), in read order
        self.active: dict[str, float] = {}  # stream -> monotonic time an entry was last read
        self.inflight: list[_Held] | None = None  # the formed message being retried
        # sent OK, marker + XACK not yet written: the recorder task writes them (retrying while
        # Redis is away) and flush() waits for it before the next send
        self.unrecorded: dict[tuple[str, str], Entry] = {}
        # when the last touch of what the buffer holds was sent (see `_lapsed`), and whether
        # the buffer must be read again from this consumer's PEL
        self._touched_at = time.monotonic()
        self._reread = False
        self._recorded = asyncio.Event()
        self._to_record = asyncio.Event()
        self.stopping = asyncio.Event()
        self.retry_at = 0.0
        self.last_flush = -1e18
        self.last_error: str | None = None
        self.disabled: str | None = None  # why, when a 410 disabled the channel
        # key -> why: a stream this channel must write (gex:dead, gex:silenced) holds another
        # type (made by hand), so its alerts wait in the outbox; cleared by the next write that
        # lands there. /healthz lists it: nothing heals it but an operator
        self.blocked: dict[str, str] = {}
        self.sent = 0
        self.dead = 0
        self.silenced = 0
        self.log = log.bind(channel=name)
        self.grouping = cfg.group_wait > 0
        self.min_rank = SEVERITY_RANK.get(cfg.min_severity, 0)
        # a new entry's marker rides on the silence check's round trip (one node only)
        self.defer_markers = silences is not None and not outbox.cluster

    # --- reading -----------------------------------------------------------------------

    async def admit(self, entries: Sequence[Entry], *, new: bool = False) -> None:
        """Buffer the entries this channel must send. `new`: read with `>` (never delivered
        to this group), whose sent markers may be checked before their first send instead
        (`defer_markers`); any other read (own PEL, claimed) is checked here."""
        skip: list[Entry] = []
        broken: list[Entry] = []
        candidates: list[Entry] = []
        seen = time.monotonic()
        for e in entries:
            self.active[e.stream] = seen
            if e.key in self.buffer or e.key in self.unrecorded:
                continue
            if e.problem == "entry deleted from the stream" or self.name not in e.channels:
                skip.append(e)
            elif e.event is None:
                broken.append(e)
            elif SEVERITY_RANK.get(e.event.severity, 0) < self.min_rank:
                skip.append(e)
                metrics.ALERTS_SENT.labels(self.name, "filtered").inc()
            else:
                candidates.append(e)
        deferred = new and self.defer_markers
        done = [False] * len(candidates) if deferred else await self.outbox.sent_already(candidates)
        now = time.monotonic()
        # an alert id held already: the same alert enqueued twice (a dead letter written twice
        # by a crash, both retried); the marker is only written after the held one is sent
        held = {h.entry.alert_id for h in self.buffer.values()}
        held |= {e.alert_id for e in self.unrecorded.values()}
        for e, sent in zip(candidates, done, strict=True):
            if sent or e.alert_id in held:  # delivered before a crash (or by the previous owner)
                skip.append(e)
                metrics.ALERTS_SENT.labels(self.name, "duplicate_skipped").inc()
            else:
                assert e.event is not None
                self.buffer[e.key] = _Held(e, e.event, now, checked=not deferred)
                held.add(e.alert_id)
        await self.outbox.ack(skip)
        for e in broken:
            await self._dead([e], e.problem or "unreadable entry", 0)

    # --- scheduling ----------------------------------------------------------------------

    def due_at(self) -> float | None:
        if not self.buffer or self.disabled is not None:
            return None
        t = self.retry_at
        if self.limiter is not None:
            t = max(t, self.limiter.ready_at())
        if self.grouping and self.inflight is None and not self.stopping.is_set():
            first = min(h.seen for h in self.buffer.values())
            t = max(t, first + self.cfg.group_wait, self.last_flush + self.cfg.group_interval)
        return t

    async def run(self) -> None:
        recorder = asyncio.create_task(self._recorder(), name=f"notify:{self.name}:ack")
        toucher = asyncio.create_task(self._toucher(), name=f"notify:{self.name}:touch")
        try:
            await self._run()
            await self._until_recorded()  # drain: write what was sent before returning
        finally:
            if await cancel_and_wait([recorder, toucher], timeout_s=RECORDER_STOP_S):
                self.log.warning("delivery recorder did not stop", timeout_s=RECORDER_STOP_S)

    async def _until_recorded(self) -> None:
        while self.unrecorded:
            self._recorded.clear()
            self._to_record.set()
            await self._recorded.wait()

    async def _recorder(self) -> None:
        while True:
            await self._to_record.wait()
            self._to_record.clear()
            batch = list(self.unrecorded.values())
            if not batch:
                continue
            try:
                await self.outbox.mark_sent(batch)
            except (RedisError, RedisClusterException, OSError) as exc:
                # keep them: a resend is what we must avoid, so retry the write until it lands
                self.log.warning("could not record deliveries", error=describe_exc(exc))
                await asyncio.sleep(0.5)
                self._to_record.set()
                continue
            for e in batch:
                self.unrecorded.pop(e.key, None)
            self._recorded.set()

    async def _toucher(self) -> None:
        """Every claim_idle/3, whatever the loop is doing, what this channel holds (waiting in
        a group window or a backoff, in the send, sent but not recorded) gets its idle time in
        the group's PEL reset, so no other daemon's XAUTOCLAIM takes it and sends it again. Its
        own task: touched from the loop, a send that outlasted claim_idle (a channel's
        timeout_s may exceed it; an email's is per SMTP step) let another daemon claim it."""
        while True:
            await asyncio.sleep(max(0.2, self.claim_idle / 3))
            started = time.monotonic()
            # lapsed: the buffer is left for the loop to read again; touched (XCLAIM), what
            # another daemon claimed meanwhile would be taken back from it
            lapsed = self._lapsed()
            held = [] if lapsed else [h.entry for h in self.buffer.values()]
            try:
                await self.outbox.touch(held + list(self.unrecorded.values()))
            except (RedisError, RedisClusterException, OSError) as exc:
                # Redis away: the loop says so, and past claim_idle lets go of the buffer
                self.log.debug("could not touch held entries", error=describe_exc(exc))
                continue
            if not lapsed:
                self._touched_at = started

    def _lapsed(self) -> bool:
        """No touch of what the buffer holds has landed for claim_idle (Redis away from this
        daemon, or its loop stalled): another daemon's XAUTOCLAIM may have taken any of it and
        sent it already. Held on, a backoff's end or a group window sent it again."""
        return bool(self.buffer) and time.monotonic() - self._touched_at > self.claim_idle

    def _let_go(self) -> None:
        """Drop the buffer (and the message formed from it); the loop reads this consumer's
        PEL again: what is still ours comes back (that read resets its idle time), what another
        daemon claimed does not. The backoff (`retry_at`) and the attempts (in Redis) stay."""
        self.log.warning(
            "held alerts not kept fresh for claim_idle; reading them again from the outbox",
            held=len(self.buffer),
        )
        self.buffer.clear()
        self.inflight = None
        self._reread = True

    async def _run(self) -> None:
        """The loop: recover own PEL, claim stuck entries, keep held ones ours, flush what is
        due, read more (poked streams at once, every owned stream on a sweep). Longer than 60
        lines because each step must see the same clock."""
        self.log.debug("channel worker started", consumer=self.outbox.consumer)
        recovered = -1  # the streams' version whose own PEL was read
        next_claim = 0.0
        next_sweep = 0.0
        try:
            while True:
                try:
                    owned = self.streams.owned()
                    if self._lapsed():
                        self._let_go()
                    if recovered != self.streams.version or self._reread:
                        # at start, and when streams moved to us: what this consumer name
                        # holds there from before (a crash, an earlier ownership)
                        version = self.streams.version
                        read_at = time.monotonic()
                        own = await self.outbox.read_own_pending(owned)
                        if own:
                            self.log.info("redelivering own pending entries", count=len(own))
                        await self.admit(own)
                        recovered = version
                        if self._reread:
                            self._reread = False
                            self._touched_at = read_at
                        next_claim = next_sweep = 0.0
                    if self.stopping.is_set() and (not self.buffer or self.disabled is not None):
                        if self.disabled is not None:
                            return  # what it holds stays pending in Redis for the next run
                        # drain: alerts committed before the stop but not read yet go out now;
                        # the caller's timeout bounds this, and what is left stays in Redis
                        more = await self._read_new(sorted(set(owned) | set(self.pokes.take())))
                        if not more:
                            return
                        await self.admit(more, new=True)
                        continue
                    now = time.monotonic()
                    if not self.stopping.is_set() and now >= next_claim:
                        claimed = await self.outbox.autoclaim(owned, self.claim_idle)
                        if claimed:
                            self.log.info("claimed stuck entries", count=len(claimed))
                        await self.admit(claimed)
                        next_claim = now + max(0.5, self.claim_idle / 2)
                    due = self.due_at()
                    if due is not None and due <= time.monotonic():
                        await self.flush()
                        continue
                    if self.stopping.is_set() or len(self.buffer) >= MAX_BUFFER:
                        await asyncio.sleep(max(0.001, BLOCK_S if due is None else due - now))
                        continue
                    if now >= next_sweep:
                        every = sorted(set(owned) | set(self.pokes.take()))
                        await self.admit(await self._read_new(every), new=True)
                        next_sweep = now + self.streams.sweep_every(len(owned))
                        continue
                    poked = self.pokes.take()
                    if poked:
                        await self.admit(await self._read_new(poked), new=True)
                        continue
                    wait = min(BLOCK_S, next_sweep - now)
                    if due is not None:
                        wait = min(wait, due - now)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.pokes.event.wait(), max(0.001, wait))
                except asyncio.CancelledError:
                    raise
                except (RedisError, RedisClusterException, OSError) as exc:
                    # Redis away: keep what we hold, try again; nothing is acked meanwhile
                    self.last_error = describe_exc(exc)
                    self.log.warning("outbox unavailable", error=self.last_error)
                    if is_wrongtype(exc):  # one outbox key of another type: read without it
                        with contextlib.suppress(RedisError, RedisClusterException, OSError):
                            await refuse_wrong_types(self.outbox.redis, self.streams)
                    await asyncio.sleep(0.5)
        finally:
            self.streams.drop_reader(self.pokes)

    async def _read_new(self, streams: Sequence[str]) -> list[Entry]:
        """New entries of `streams`, about as many as the buffer has room for. A read's count
        applies to EACH stream, so the room is shared among them, and the streams that filled
        their share are read again with what is left. At least one entry per stream and read:
        MAX_BUFFER is exceeded by at most one per stream (a full count each was 100 x 5,000)."""
        out: list[Entry] = []
        todo = list(streams)
        while todo:
            room = MAX_BUFFER - len(self.buffer) - len(out)
            count = max(1, min(READ_COUNT, room // len(todo)))
            got = await self.outbox.read_new(todo, count)
            out += got
            per_stream = Counter(e.stream for e in got)
            todo = [s for s in todo if per_stream[s] >= count]
            if len(got) >= room:
                break
        return out

    def active_streams(self) -> list[str]:
        """Where this channel's backlog can be: the streams it holds entries of, and of those
        it reads (owns) the ones it saw entries on within ACTIVE_S (the others were empty for
        it at the last sweep), or all of them while a full buffer keeps it from reading. A
        stream moved to another daemon is that daemon's backlog, not counted here too."""
        cutoff = time.monotonic() - ACTIVE_S
        for stream, seen in list(self.active.items()):
            if seen < cutoff:
                del self.active[stream]
        owned = set(self.streams.owned())
        if len(self.buffer) < MAX_BUFFER:
            owned &= set(self.active)
        return sorted({h.entry.stream for h in self.buffer.values()} | owned)

    # --- sending -------------------------------------------------------------------------

    async def _silences_of(self, batch: list[_Held]) -> list[Silence | None]:
        """Which silence holds each alert for this channel now. Checked right before each send,
        so a silence added while an alert waits in a group window or a backoff still applies."""
        if self.silences is None:
            return [None] * len(batch)
        try:
            return await self.silences.check_many([h.event for h in batch], self.name)
        except (RedisError, RedisClusterException, OSError) as exc:
            # cannot tell: deliver (a duplicate page beats a lost one)
            self.log.warning("silence check failed; delivering", error=describe_exc(exc))
            return [None] * len(batch)

    async def _record_silenced(self, held: list[tuple[_Held, Silence]]) -> None:
        """Recorded on `gex:silenced` and acked from this channel's group, not sent."""
        if not held:
            return
        for _h, silence in held:
            decision = decide(
                Silenced(silence.id), attempts=0, failing_since=None, now=0.0, policy=self.policy
            )
            assert isinstance(decision, Ack) and decision.kind == "silenced"
        recorded = await self._write_shared(
            keys.SILENCED,
            "silenced alerts",
            self.outbox.record_silenced([(h.entry, s) for h, s in held]),
            [h.entry.alert_id for h, _ in held],
        )
        if not recorded:
            for h, _ in held:
                self.buffer.pop(h.entry.key, None)
            return
        self._finished([h.entry for h, _ in held])
        for h, silence in held:
            self.buffer.pop(h.entry.key, None)
            self.log.info("alert silenced", alert_id=h.entry.alert_id, silence=silence.id)
        self.silenced += len(held)
        metrics.ALERTS_SENT.labels(self.name, "silenced").inc(len(held))

    async def _batch(self) -> list[_Held]:
        """The message to send now: the one already formed, retried as it is (unless every
        member has been silenced since: then it is recorded as silenced), or a new one from
        the head of the buffer without the members a silence holds."""
        if self.inflight is not None:
            batch = self.inflight
            found = await self._silences_of(batch)
            if all(s is not None for s in found):
                await self._record_silenced(
                    [(h, s) for h, s in zip(batch, found, strict=True) if s is not None]
                )
                self.inflight = None
                return []
            return batch
        held = list(self.buffer.values())
        candidates = held[:MAX_GROUP] if self.grouping else held[:1]
        if any(not h.checked for h in candidates):
            candidates, found = await self._markers_and_silences(candidates)
        else:
            found = await self._silences_of(candidates)
        await self._record_silenced(
            [(h, s) for h, s in zip(candidates, found, strict=True) if s is not None]
        )
        batch = [h for h, s in zip(candidates, found, strict=True) if s is None]
        self.inflight = batch or None
        return batch

    async def _markers_and_silences(
        self, candidates: list[_Held]
    ) -> tuple[list[_Held], list[Silence | None]]:
        """The sent markers of the candidates not checked yet and the silence check, in one
        round trip (`SilenceCheck.check_many_with`). Those sent already (by a previous owner,
        or a copy of an alert that went out) are acked and dropped; the rest come back with the
        silence holding each. A Redis error propagates: the markers are unknown, so nothing is
        sent (as when the check at `admit` fails)."""
        assert self.silences is not None  # defer_markers
        unchecked = [h for h in candidates if not h.checked]
        try:
            found, replies = await self.silences.check_many_with(
                [h.event for h in candidates],
                self.name,
                self.outbox.marker_checks([h.entry for h in unchecked]),
            )
        except RedisError as exc:
            if not is_wrongtype(exc):
                raise
            # a silences key of another type (made by hand; EXISTS never says WRONGTYPE):
            # raised, every turn failed on it every 0.5 s and nothing was delivered. The
            # markers on their own, and the silences as any send judges them: cannot tell,
            # deliver (with a warning)
            replies = await self.outbox.sent_already([h.entry for h in unchecked])
            found = await self._silences_of(candidates)
        sent = {h.entry.key for h, x in zip(unchecked, replies, strict=True) if x}
        if sent:  # acked before anything counts as checked: a failed ack checks them again
            await self.outbox.ack([h.entry for h in candidates if h.entry.key in sent])
            for key in sent:
                self.buffer.pop(key, None)
        for h in unchecked:
            h.checked = True
        if not sent:
            return candidates, found
        metrics.ALERTS_SENT.labels(self.name, "duplicate_skipped").inc(len(sent))
        kept = [(h, s) for h, s in zip(candidates, found, strict=True) if h.entry.key not in sent]
        return [h for h, _ in kept], [s for _, s in kept]

    async def flush(self) -> None:
        if self._lapsed():
            self._let_go()
            return
        batch = await self._batch()
        if not batch:
            return
        if self.limiter is not None:
            self.limiter.take()
        self.last_flush = time.monotonic()
        outcome = await self.deliver([h.event for h in batch])
        if isinstance(outcome, Ok):
            await self._sent(batch)
            return
        self.last_error = getattr(outcome, "reason", None)
        attempts, since = 0, None
        if not (isinstance(outcome, Retry) and outcome.throttled) and not isinstance(outcome, Gone):
            counted = await self.outbox.bump_attempts([h.entry for h in batch], self.clock())
            batch, known = self._uncounted_left_pending(batch, counted)
            if not batch:
                return
            attempts = max(n for n, _ in known)
            since = min(s for _, s in known)
        now = self.clock()
        decision = decide(
            outcome, attempts=attempts, failing_since=since, now=now, policy=self.policy
        )
        if isinstance(decision, DeadLetter):
            # Redis first, then forget: if the write fails the entries stay held, tried again
            await self._dead([h.entry for h in batch], decision.reason, attempts)
            for h in batch:
                self.buffer.pop(h.entry.key, None)
            self.inflight = None
        elif isinstance(decision, RetryLater):
            self._retry_later(batch, decision, outcome, attempts, now)
        elif isinstance(decision, DisableChannel):
            await self._disable(decision.reason)

    async def _sent(self, batch: list[_Held]) -> None:
        for h in batch:
            self.buffer.pop(h.entry.key, None)
            self.unrecorded[h.entry.key] = h.entry
        self.inflight = None
        # the sent marker is durable before the next send, so a crash re-sends at most the
        # message that was in flight (same webhook-id), never a run of already-sent ones
        await self._record([h.entry for h in batch])
        self._finished([h.entry for h in batch])
        self.retry_at = 0.0
        self.sent += len(batch)
        metrics.ALERTS_SENT.labels(self.name, "ok").inc(len(batch))
        self.log.debug("sent", alert_id=batch[0].entry.alert_id, count=len(batch))

    async def _record(self, entries: list[Entry]) -> None:
        """Write the markers and XACKs of a message just sent, and return once they are
        written. When nothing else waits to be written, written here (two task switches
        fewer a send than through the recorder task); when that fails, or something else
        waits, the recorder task writes them, retrying while Redis is away."""
        if len(self.unrecorded) == len(entries):
            try:
                await self.outbox.mark_sent(entries)
            except (RedisError, RedisClusterException, OSError):
                pass  # the recorder tries again (and says so if it fails too)
            else:
                for e in entries:
                    self.unrecorded.pop(e.key, None)
                return
        await self._until_recorded()

    def _uncounted_left_pending(
        self, batch: list[_Held], counted: list[tuple[int, float] | None]
    ) -> tuple[list[_Held], list[tuple[int, float]]]:
        """The members of a failed message whose attempts were counted, with their counts. One
        whose attempts key holds another type (made by hand) raised out of the flush, and the
        loop sent the same message again every 0.5 s, the channel stuck behind it: it is left
        pending in the outbox instead (claimed and tried again after claim_idle), as a shared
        stream of another type is (`_write_shared`), until an attempt is counted or it is done."""
        kept = [(h, c) for h, c in zip(batch, counted, strict=True) if c is not None]
        self._finished([h.entry for h, _ in kept])
        if len(kept) == len(batch):
            return batch, [c for _, c in kept]
        for h, c in zip(batch, counted, strict=True):
            if c is None:
                self.buffer.pop(h.entry.key, None)
                key = keys.attempts(h.entry.slot_symbol, h.entry.alert_id, self.outbox.channel)
                self._blocked_by(key, "retries", "hash", [h.entry.alert_id])
        self.inflight = [h for h, _ in kept] or None
        return [h for h, _ in kept], [c for _, c in kept]

    def _finished(self, entries: Sequence[Entry]) -> None:
        """Their attempts key was written (counted, or deleted with the XACK): any of them that
        blocked the channel (`_uncounted_left_pending`) no longer does."""
        if not self.blocked:
            return
        for e in entries:
            key = keys.attempts(e.slot_symbol, e.alert_id, self.outbox.channel)
            self.blocked.pop(key, None)

    def _retry_later(
        self,
        batch: list[_Held],
        decision: RetryLater,
        outcome: DeliveryOutcome,
        attempts: int,
        now: float,
    ) -> None:
        after = getattr(outcome, "after", None)
        if after is not None and self.limiter is not None:
            self.limiter.hold(after)
        self.retry_at = time.monotonic() + decision.delay_s
        kind = "throttled" if decision.throttled else "retry"
        metrics.ALERTS_SENT.labels(self.name, kind).inc(len(batch))
        self.log.warning(
            "delivery failed, will retry",
            alert_id=batch[0].entry.alert_id,
            count=len(batch),
            attempt=attempts or None,
            retry_in_s=round(decision.delay_s, 3),
            retry_at=iso_utc(datetime.fromtimestamp(now + decision.delay_s, UTC)),
            reason=decision.reason,
        )

    async def _disable(self, reason: str) -> None:
        self.disabled = redaction.redact(reason)
        self.last_error = self.disabled
        metrics.CHANNEL_DISABLED.labels(self.name).set(1)
        self.log.error(
            "channel disabled: the receiver says this endpoint is gone; its alerts stay queued "
            "in the outbox until the channel's config changes (reload) or the daemon restarts",
            reason=self.disabled,
            queued=len(self.buffer),
        )
        if self.on_disabled is not None:
            try:
                await self.on_disabled(self.name, self.disabled)
            except Exception as exc:  # the alert about the alert must not kill the channel
                self.log.error("could not raise the operator alert", error=describe_exc(exc))

    async def deliver(self, events: list[AlertEvent]) -> DeliveryOutcome:
        try:
            return await self.notifier.send(events)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a notifier bug must not kill the channel; retry later
            self.log.error("notifier raised", error=describe_exc(exc))
            return retry(describe_exc(exc))

    async def _write_shared(
        self,
        key: str,
        what: str,
        write: Awaitable[Any],
        alert_ids: list[str],
        **fields: Any,
    ) -> bool:
        """Run `write` to a stream every channel shares (`gex:dead`, `gex:silenced`); False
        when that key holds another type (made by hand). Raised, the entries stayed held and
        every turn failed on them again, the channel stuck behind them; instead they are left
        pending in the outbox (not acked: claimed and tried again after claim_idle), named in
        an error line, and the key stays in `blocked` (/healthz) until a write there lands.
        Any other Redis error (Redis away) propagates: the entries stay held, tried again."""
        try:
            await write
        except RedisError as exc:
            if not is_wrongtype(exc):
                raise
            self._blocked_by(key, what, "stream", alert_ids, **fields)
            return False
        self.blocked.pop(key, None)
        return True

    def _blocked_by(
        self, key: str, what: str, kind: str, alert_ids: list[str], **fields: Any
    ) -> None:
        """A key this channel must write holds another type than `kind`: one error line naming
        it, and `blocked` (/healthz, 503) says so until a write there lands."""
        self.log.error(
            f"{what} not written: {key} holds another type; the alerts stay pending in the outbox",
            key=key,
            alert_ids=alert_ids,
            **fields,
        )
        self.blocked[key] = f"holds another type than a {kind}: {what} wait"

    async def _dead(self, entries: list[Entry], reason: str, attempts: int) -> None:
        reason = redaction.redact(reason)
        written = await self._write_shared(
            keys.DEAD,
            "dead letters",
            self.outbox.dead_letter(entries, reason, attempts),
            [e.alert_id for e in entries],
            reason=reason,
        )
        if not written:
            return
        self._finished(entries)
        self.dead += len(entries)
        metrics.DEAD_LETTERS.labels(self.name).inc(len(entries))
        metrics.ALERTS_SENT.labels(self.name, "dead").inc(len(entries))
        for e in entries:
            self.log.error("alert dead-lettered", alert_id=e.alert_id, reason=reason)
