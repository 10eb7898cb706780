"""The durable outboxes on Redis: one stream per symbol, `gex:{SYM}:alerts` (and `gex:{*}:alerts`
for events about no one symbol), one consumer group per channel on each, sent markers, attempt
counters and the dead-letter stream `gex:dead`.

Why per symbol: the commit of a snapshot XADDs its alerts, and on Redis Cluster one script can
only touch one slot; the outbox shares the snapshot's `{SYM}` slot. A channel's consumer reads
the outboxes it is given (the symbols its daemon owns, see notify/streams.py), so order is kept
per symbol, which is all a per-symbol stream can promise.

Group creation: whoever XADDs an alert creates its channels' groups on that stream first, at
`$` (commit.lua, operator.lua), so an entry is always new to the groups of the channels it
names, and a channel added later gets no history. Readers create the groups of streams they
are about to read the same way (`ensure_groups`), because XREADGROUP on a stream without the
group fails. A restart resumes from the group's own last-delivered id: nothing added while
the daemon was down is skipped.

Delivery is at-least-once with a duplicate window as small as we can make it: the sent marker
`gex:{SYM}:sent:{alert}:{channel}` is written together with the XACK in one script
(outbox.lua) right after the receiver accepted. Setting it *before* the send would turn a crash
into a lost alert; setting it after means a crash between the receiver's 2xx and that script
(or during the request) redelivers once, with the same id (`webhook-id`, Message-ID) so a
receiver can drop the repeat. Every later redelivery (own PEL after restart, XAUTOCLAIM by
another consumer, after an ownership move, a dead letter retried) checks the marker first and
is acked without sending. The marker names no daemon, so it holds across ownership moves.

Attempts are counted in Redis (`gex:{SYM}:retry:{alert}:{channel}`) so a crash loop cannot
retry an alert forever; when they reach max_attempts, or on a permanent failure, the entry is
copied to `gex:dead` with a redacted reason and then acked. Those are two steps (`gex:dead` is
in another slot): a crash between them leaves the entry pending, so it is judged again, and at
worst dead-lettered twice (a retried copy is stopped by its sent marker): never lost.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import msgspec
import redis.asyncio as aioredis
import structlog
from redis.exceptions import NoScriptError, ResponseError

from gex_alertd import keys, packed, redaction
from gex_alertd.connections import as_str, entries, entry_key, is_cluster, key_types
from gex_alertd.model import AlertEvent, decode_alert, decode_channels, encode_channels, iso_utc
from gex_alertd.notify.silences import SILENCED_MAXLEN, Silence, silenced_fields
from gex_alertd.notify.streams import OutboxStreams
from gex_alertd.redis_errors import is_wrongtype

log = structlog.get_logger()

ATTEMPTS_TTL_MS = 7 * 86_400_000
KEYS_PER_READ = 256  # streams per XREADGROUP on one node (a cluster reads one per command)
# per-stream commands (XAUTOCLAIM, XINFO GROUPS) pipelined per round trip: 5,000 at once are
# megabytes of commands and replies that the process keeps as heap afterwards (issue 12)
STREAMS_PER_TRIP = 250
LUA = resources.files("gex_alertd.notify").joinpath("outbox.lua").read_text()
AUTOCLAIM_LUA = resources.files("gex_alertd.notify").joinpath("autoclaim.lua").read_text()
BACKLOG_LUA = resources.files("gex_alertd.notify").joinpath("backlog.lua").read_text()


def id_ms(entry_id: str) -> int:
    return entry_key(entry_id)[0]


class Entry(msgspec.Struct):
    """One outbox stream entry as read by a channel's consumer."""

    stream: str
    entry_id: str
    alert_id: str
    channels: list[str]
    symbol: str
    raw_event: bytes
    event: AlertEvent | None  # None when the JSON does not decode (dead-lettered at once)
    problem: str | None = None  # why it is unusable

    @property
    def key(self) -> tuple[str, str]:
        """Unique across streams (entry ids are unique only within one stream)."""
        return self.stream, self.entry_id

    @property
    def slot_symbol(self) -> str:
        """The symbol whose slot holds this entry's marker and counters: its stream's, not the
        `symbol` field's (a hostile or old entry could name any symbol there)."""
        return keys.symbol_of_outbox(self.stream) or keys.OPS_SYMBOL

    @classmethod
    def parse(cls, stream: str, entry_id: Any, fields: dict[Any, Any] | None) -> Entry:
        eid = as_str(entry_id)
        f = {as_str(k): v for k, v in (fields or {}).items()}
        raw = f.get("event", b"")
        raw = raw.encode() if isinstance(raw, str) else raw
        channels = decode_channels(f.get("channels", b""))
        event: AlertEvent | None = None
        problem: str | None = None
        if not f:
            problem = "entry deleted from the stream"
        else:
            try:
                event = decode_alert(raw)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                problem = f"malformed event JSON in outbox entry {stream} {eid}: {exc}"
        alert_id = as_str(f.get("id", b"")) or (event.id if event else "")
        return cls(
            stream, eid, alert_id, channels, as_str(f.get("symbol", b"")), raw, event, problem
        )


class DeadLetter(msgspec.Struct):
    dead_id: str
    alert_id: str
    channel: str
    symbol: str
    reason: str
    attempts: int
    entry: str
    failed_at: str
    event: bytes


def _by_stream(items: Iterable[Entry]) -> dict[str, list[Entry]]:
    out: dict[str, list[Entry]] = defaultdict(list)
    for e in items:
        out[e.stream].append(e)
    return out


def _is_nogroup(exc: BaseException) -> bool:
    return isinstance(exc, ResponseError) and "NOGROUP" in str(exc)


TYPES_EVERY_S = 10.0


async def refuse_wrong_types(
    redis: aioredis.Redis, streams: OutboxStreams, *, force: bool = False
) -> None:
    """A read failed with WRONGTYPE: find the outbox keys that hold another type (by hand, or
    another program's key of that name) and leave them out of every read, each named in an
    error line (the symbol's commits refuse its alerts too: commit.lua), so the other
    symbols' alerts go on. `recheck_refused` reads them again once they are streams. `force`:
    a WRONGTYPE only an outbox key causes (creating groups), searched whatever the last found."""
    now = time.monotonic()
    if now < streams.types_check_after and not force:
        return  # a WRONGTYPE no outbox key causes (gex:dead made a string) found nothing
    wrong = {s: t for s, t in (await key_types(redis, streams.all())).items() if t != "stream"}
    wrong = {s: t for s, t in wrong.items() if t != "none"}
    if not wrong:  # not again for a while: one TYPE per stream, every channel, every turn
        streams.types_check_after = now + TYPES_EVERY_S
    for stream, kind in wrong.items():
        log.error(
            "outbox key holds another type: its alerts are not read until it is a stream",
            stream=stream,
            type=kind,
        )
    streams.refuse(wrong)


async def recheck_refused(redis: aioredis.Redis, streams: OutboxStreams) -> None:
    """The refused keys that are streams again (or gone) are read again."""
    types = await key_types(redis, sorted(streams.refused))
    streams.forgive(s for s, t in types.items() if t in ("stream", "none"))


class Outbox:
    """Redis operations of one channel's consumer over any number of outbox streams."""

    def __init__(self, redis: aioredis.Redis, channel: str, consumer: str, dedup_ttl_s: float):
        self.redis = redis
        self.channel = channel
        self.group = keys.notify_group(channel)
        self.consumer = consumer
        self.dedup_ttl_ms = max(1, int(dedup_ttl_s * 1000))
        self.cluster = is_cluster(redis)
        self._done = redis.register_script(LUA)
        self._claim = redis.register_script(AUTOCLAIM_LUA)
        self.acked_streams: set[str] = set()  # since the dispatcher's last trim
        # the last sweep's streams, count and packed commands (_packed_read)
        self._sweep: tuple[tuple[str, ...], int, bytes] | None = None

    # --- reading -------------------------------------------------------------------------

    async def _read(self, ids: dict[str, str], count: int) -> list[Entry]:
        """XREADGROUP over `ids` (stream -> id), without BLOCK. One node: up to KEYS_PER_READ
        streams per command; a cluster: one command per stream, pipelined (a multi-key
        command must stay in one slot). A stream without our group gets it, then is read."""
        if not ids:
            return []
        streams = list(ids)
        step = 1 if self.cluster else KEYS_PER_READ
        chunks = [streams[i : i + step] for i in range(0, len(streams), step)]
        replies: list[Any] = []
        if self.cluster:
            async with self.redis.pipeline(transaction=False) as pipe:
                for chunk in chunks:
                    pipe.xreadgroup(
                        self.group, self.consumer, {chunk[0]: ids[chunk[0]]}, count=count
                    )
                replies = await pipe.execute(raise_on_error=False)
        else:
            replies = await packed.exchange(self.redis, self._packed_read(ids, count), len(chunks))
        missing: list[str] = []
        out: list[Entry] = []
        for chunk, reply in zip(chunks, replies, strict=True):
            if isinstance(reply, BaseException):
                if not _is_nogroup(reply):
                    raise reply
                missing += chunk
                continue
            if self.cluster:
                out.extend(self._entries(reply))
            else:
                out.extend(self._raw_entries(reply))
        if missing:
            await ensure_groups(self.redis, missing, [self.channel])
            out.extend(await self._read({s: ids[s] for s in missing}, count))
        # oldest first across streams: within one read, alerts go out in the order they were
        # enqueued (each stream is in order already; the sort keeps that)
        out.sort(key=lambda e: entry_key(e.entry_id))
        return out

    def _packed_read(self, ids: dict[str, str], count: int) -> bytes:
        """The XREADGROUP commands of a read on one node, KEYS_PER_READ streams each, as one
        payload. A read of new entries on the same streams with the same count (the sweep
        over every owned outbox, every 2 s) reuses the bytes of the last one; packing it anew
        is ~2 ms of CPU at 5,000 streams."""
        streams = tuple(ids)
        # a sweep, not a poke's read of a few streams (which would take its place here)
        sweep = len(streams) >= max(2, KEYS_PER_READ // 4) and all(i == ">" for i in ids.values())
        if sweep and self._sweep is not None and self._sweep[:2] == (streams, count):
            return self._sweep[2]
        head: list[bytes | str | int] = [b"XREADGROUP", b"GROUP", self.group, self.consumer]
        head += [b"COUNT", count, b"STREAMS"]
        payload = b"".join(
            packed.pack(*head, *chunk, *[ids[s] for s in chunk])
            for chunk in (
                streams[i : i + KEYS_PER_READ] for i in range(0, len(streams), KEYS_PER_READ)
            )
        )
        if sweep:
            self._sweep = (streams, count, payload)
        return payload

    @staticmethod
    def _raw_entries(reply: Any) -> list[Entry]:
        """Entries of a raw XREADGROUP reply: [[stream, [[id, [field, value, ...] or nil],
        ...]], ...] (RESP3: a map of stream -> entries), or nil when nothing is new."""
        out: list[Entry] = []
        for name, items in reply.items() if isinstance(reply, dict) else reply or ():
            stream = as_str(name)
            for entry_id, flat in items:
                fields = dict(zip(flat[::2], flat[1::2], strict=True)) if flat else None
                out.append(Entry.parse(stream, entry_id, fields))
        return out

    @staticmethod
    def _entries(reply: Any) -> list[Entry]:
        out: list[Entry] = []
        if not reply:
            return out
        streams = reply.items() if isinstance(reply, dict) else reply
        for name, items in streams:
            stream = as_str(name)
            out.extend(Entry.parse(stream, entry_id, fields) for entry_id, fields in items)
        return out

    async def read_own_pending(self, streams: Iterable[str], count: int = 500) -> list[Entry]:
        """Entries delivered to this consumer name before (a crash) and never acked."""
        out: list[Entry] = []
        after = {s: "0" for s in streams}
        while after:
            batch = await self._read(after, count)
            last: dict[str, str] = {}
            for e in batch:
                last[e.stream] = e.entry_id
            out.extend(batch)
            full = {s for s, es in _by_stream(batch).items() if len(es) >= count}
            after = {s: last[s] for s in full}
        return out

    async def read_new(self, streams: Iterable[str], count: int) -> list[Entry]:
        """New entries for this group on these streams (no BLOCK: the worker waits on pokes)."""
        return await self._read({s: ">" for s in streams}, count)

    async def autoclaim(
        self, streams: Iterable[str], min_idle_s: float, count: int = 100
    ) -> list[Entry]:
        """Take over entries idle longer than `min_idle_s` (their consumer died or hung, or the
        stream moved to us from another daemon)."""
        out: list[Entry] = []
        todo = {s: "0-0" for s in streams}
        for _ in range(50):  # bounded: at most 50 x count entries per stream per sweep
            if not todo:
                break
            nxt: dict[str, str] = {}
            pending = list(todo.items())
            claim = self._autoclaim if self.cluster else self._autoclaim_scripted
            for i in range(0, len(pending), STREAMS_PER_TRIP):
                chunk = pending[i : i + STREAMS_PER_TRIP]
                nxt.update(await claim(chunk, min_idle_s, count, out))
            todo = nxt
        return out

    async def _autoclaim(
        self, starts: list[tuple[str, str]], min_idle_s: float, count: int, out: list[Entry]
    ) -> dict[str, str]:
        """One pipelined XAUTOCLAIM per (stream, start): claimed entries go to `out`; returns
        the streams with more to look at and their next cursor."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for s, start in starts:
                pipe.xautoclaim(
                    s, self.group, self.consumer, int(min_idle_s * 1000), start, count=count
                )
            replies = await pipe.execute(raise_on_error=False)
        nxt: dict[str, str] = {}
        for (s, _start), reply in zip(starts, replies, strict=True):
            if isinstance(reply, BaseException):
                if _is_nogroup(reply):
                    continue  # nothing ever read there: nothing to claim
                raise reply
            cursor, claimed = as_str(reply[0]), reply[1]
            deleted = reply[2] if len(reply) > 2 else []
            out.extend(Entry.parse(s, eid, fields) for eid, fields in claimed)
            if deleted:  # gone from the stream: nothing to deliver, drop them from the PEL
                await self.redis.xack(s, self.group, *deleted)
            if cursor != "0-0":
                nxt[s] = cursor
        return nxt

    async def _autoclaim_scripted(
        self, starts: list[tuple[str, str]], min_idle_s: float, count: int, out: list[Entry]
    ) -> dict[str, str]:
        """As `_autoclaim`, in one script call on one node (autoclaim.lua): only the streams
        that had something answer."""
        names = [s for s, _start in starts]
        args: list[str | int] = [self.group, self.consumer, int(min_idle_s * 1000), count]
        args += [start for _s, start in starts]
        reply = await self._claim(keys=names, args=args)
        nxt: dict[str, str] = {}
        for index, cursor, claimed, deleted in reply:
            s = names[int(index) - 1]
            for eid, flat in claimed:
                fields = dict(zip(flat[::2], flat[1::2], strict=True)) if flat else None
                out.append(Entry.parse(s, eid, fields))
            if deleted:  # gone from the stream: nothing to deliver, drop them from the PEL
                await self.redis.xack(s, self.group, *deleted)
            if as_str(cursor) != "0-0":
                nxt[s] = as_str(cursor)
        return nxt

    async def touch(self, held: Sequence[Entry]) -> None:
        """Reset the idle time of entries we still hold (waiting in a group window or a backoff),
        so another consumer's XAUTOCLAIM does not take them and send them twice. A stream or
        group deleted meanwhile (NOGROUP) has no PEL left to keep them in: nobody else can take
        them, so that is no error (raised, it stopped the channel's loop for good)."""
        if not held:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for stream, es in _by_stream(held).items():
                pipe.xclaim(
                    stream, self.group, self.consumer, 0, [e.entry_id for e in es], justid=True
                )
            replies = await pipe.execute(raise_on_error=False)
        for reply in replies:
            if isinstance(reply, BaseException) and not _is_nogroup(reply):
                raise reply

    # --- bookkeeping ---------------------------------------------------------------------

    async def _packed(self, commands: list[bytes]) -> list[Any]:
        """Commands packed by the caller, in one write on one node (packed.exchange: these
        run for every alert, and redis-py's pipeline costs more than they do); an error reply
        raises, as a pipeline's execute does."""
        replies = await packed.exchange(self.redis, b"".join(commands), len(commands))
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies

    async def ack(self, done: Iterable[Entry]) -> None:
        groups = _by_stream(done)
        if not groups:
            return
        try:
            if self.cluster:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for stream, es in groups.items():
                        pipe.xack(stream, self.group, *[e.entry_id for e in es])
                    await pipe.execute()
            else:
                await self._packed(
                    [
                        packed.pack("XACK", stream, self.group, *[e.entry_id for e in es])
                        for stream, es in groups.items()
                    ]
                )
        finally:  # as in _finish
            self.acked_streams |= set(groups)

    def marker_checks(self, candidates: Sequence[Entry]) -> list[bytes]:
        """One packed EXISTS of its sent marker per entry (one node): `sent_already`'s
        commands, for a caller that sends them in a round trip of its own."""
        return [
            packed.pack("EXISTS", keys.sent_marker(e.slot_symbol, e.alert_id, self.channel))
            for e in candidates
        ]

    async def sent_already(self, candidates: Sequence[Entry]) -> list[bool]:
        if not candidates:
            return []
        if not self.cluster:
            return [bool(x) for x in await self._packed(self.marker_checks(candidates))]
        markers = [keys.sent_marker(e.slot_symbol, e.alert_id, self.channel) for e in candidates]
        async with self.redis.pipeline(transaction=False) as pipe:
            for marker in markers:
                pipe.exists(marker)
            return [bool(x) for x in await pipe.execute()]

    async def _finish(self, done: Sequence[Entry], *, delivered: bool) -> None:
        """outbox.lua per stream: XACK, attempts dropped, sent markers when delivered. On one
        node every stream's call goes in one write (the script is idempotent: a resend after a
        lost connection, or after NOSCRIPT, changes nothing already done)."""
        ttl = str(self.dedup_ttl_ms) if delivered else ""
        calls: list[tuple[list[str], list[str]]] = []
        for stream, es in _by_stream(done).items():
            names = [stream]
            for e in es:
                names += [
                    keys.sent_marker(e.slot_symbol, e.alert_id, self.channel),
                    keys.attempts(e.slot_symbol, e.alert_id, self.channel),
                ]
            calls.append((names, [self.group, ttl, *[e.entry_id for e in es]]))
        if not calls:
            return
        try:
            if self.cluster:
                for names, args in calls:
                    await self._done(keys=names, args=args)
            else:
                commands = [
                    packed.pack("EVALSHA", self._done.sha, len(n), *n, *a) for n, a in calls
                ]
                try:
                    await self._packed(commands)
                except NoScriptError:  # a fresh or restarted Redis: load it, send them again
                    await self.redis.script_load(LUA)
                    await self._packed(commands)
        finally:
            # after the write (a trim in between would miss what it acks), even a failed one:
            # it may have acked some streams (one counted but not acked costs the trim a look)
            self.acked_streams.update(names[0] for names, _args in calls)

    async def mark_sent(self, done: Sequence[Entry]) -> None:
        """Entries the receiver accepted: sent marker + XACK + attempts reset, per stream."""
        await self._finish(done, delivered=True)

    async def bump_attempts(
        self, failed: Sequence[Entry], now: float
    ) -> list[tuple[int, float] | None]:
        """Count one failed attempt per alert; (attempts so far, wall time of the first failure)
        each. Both live in Redis so a restart neither resets the count nor the retry budget.
        None for an alert whose attempts key holds another type (made by hand): its count is
        unknown, and the others' replies are still read (raised, the whole message failed)."""
        now_ms = str(int(now * 1000))
        async with self.redis.pipeline(transaction=False) as pipe:
            for e in failed:
                key = keys.attempts(e.slot_symbol, e.alert_id, self.channel)
                pipe.hincrby(key, "n", 1)
                pipe.hsetnx(key, "since_ms", now_ms)
                pipe.hget(key, "since_ms")
                pipe.pexpire(key, ATTEMPTS_TTL_MS)
            res = await pipe.execute(raise_on_error=False)
        out: list[tuple[int, float] | None] = []
        for i in range(len(failed)):
            replies = res[4 * i : 4 * i + 4]
            errors = [x for x in replies if isinstance(x, Exception)]
            if errors and all(is_wrongtype(x) for x in errors):
                out.append(None)
                continue
            if errors:
                raise errors[0]
            n, _, since, _ = replies
            out.append((int(n), int(as_str(since or now_ms)) / 1000))
        return out

    async def dead_letter(self, dead: Sequence[Entry], reason: str, attempts: int) -> None:
        reason = redaction.redact(reason)
        now = iso_utc(datetime.now(UTC))
        async with self.redis.pipeline(transaction=False) as pipe:
            for e in dead:
                pipe.xadd(
                    keys.DEAD,
                    {
                        "id": e.alert_id,
                        "channel": self.channel,
                        "symbol": e.symbol,
                        "reason": reason,
                        "attempts": str(attempts),
                        "entry": e.entry_id,
                        "stream": e.stream,
                        "failed_at": now,
                        "event": e.raw_event,
                    },
                )
            await pipe.execute()
        await self._finish(dead, delivered=False)

    async def record_silenced(self, held: Sequence[tuple[Entry, Silence]]) -> None:
        """Alerts a silence kept from this channel: recorded on `gex:silenced`, then acked (a
        crash between leaves the entry pending: checked again, at worst recorded twice)."""
        now = iso_utc(datetime.now(UTC))
        async with self.redis.pipeline(transaction=False) as pipe:
            for e, silence in held:
                fields = silenced_fields(
                    e.alert_id, self.channel, e.symbol, silence, now, e.raw_event
                )
                pipe.xadd(keys.SILENCED, fields, maxlen=SILENCED_MAXLEN, approximate=True)
            await pipe.execute()
        await self._finish([e for e, _ in held], delivered=False)


async def ensure_groups(
    redis: aioredis.Redis, streams: Iterable[str], channels: Iterable[str]
) -> None:
    """Create every channel's group on every stream that lacks it (at `$`, MKSTREAM)."""
    names = [keys.notify_group(c) for c in channels]
    streams = list(streams)
    for i in range(0, len(streams), 1000):
        async with redis.pipeline(transaction=False) as pipe:
            for s in streams[i : i + 1000]:
                for g in names:
                    pipe.xgroup_create(s, g, id="$", mkstream=True)
            replies = await pipe.execute(raise_on_error=False)
        for r in replies:
            if isinstance(r, BaseException) and "BUSYGROUP" not in str(r):
                raise r


async def all_streams(redis: aioredis.Redis, symbols: Iterable[str] = ()) -> list[str]:
    """Every outbox stream: those of `symbols`, the operator outbox, and any other found by
    SCAN (a symbol no longer watched, or one `replay --send` wrote for). Sorted."""
    found = {keys.outbox(s) for s in symbols} | {keys.outbox(keys.OPS_SYMBOL)}
    async for name in redis.scan_iter(match=keys.OUTBOX_PATTERN, count=1000, _type="stream"):
        found.add(as_str(name))
    return sorted(found)


async def group_stats(
    redis: aioredis.Redis, channel: str, streams: Iterable[str]
) -> tuple[int, float]:
    """(entries of these streams not yet acknowledged by this channel, age in seconds of the
    oldest). healthz and the gauges read thousands of streams every few seconds: `backlog`."""
    total, oldest = await backlog(
        redis, keys.notify_group(channel), list(streams), cluster=is_cluster(redis)
    )
    age = max(0.0, time.time() - oldest / 1000) if oldest is not None else 0.0
    return total, age


async def backlog(
    redis: aioredis.Redis, group: str, streams: list[str], *, cluster: bool
) -> tuple[int, int | None]:
    """(entries of `streams` not yet acknowledged by `group`, the ms of the oldest or None).
    On one node one script call per STREAMS_PER_TRIP streams (backlog.lua: ~1 ms of client
    CPU per 1,000 streams, against ~23 ms for the pipelined commands); on a cluster one XINFO
    GROUPS per stream, pipelined, then an XPENDING or XRANGE per stream with a backlog."""
    total = 0
    oldest: int | None = None
    if not cluster:
        script = redis.register_script(BACKLOG_LUA)
        for i in range(0, len(streams), STREAMS_PER_TRIP):
            count, top = await script(keys=streams[i : i + STREAMS_PER_TRIP], args=[group])
            total += int(count)
            if top:
                ms = id_ms(as_str(top))
                oldest = ms if oldest is None else min(oldest, ms)
        return total, oldest
    for i in range(0, len(streams), STREAMS_PER_TRIP):
        chunk = streams[i : i + STREAMS_PER_TRIP]
        async with redis.pipeline(transaction=False) as pipe:
            for stream in chunk:
                pipe.xinfo_groups(stream)
            replies = await pipe.execute(raise_on_error=False)
        firsts: list[tuple[str, dict[Any, Any]]] = []  # streams whose oldest entry we need
        for stream, groups in zip(chunk, replies, strict=True):
            if isinstance(groups, ResponseError):  # no stream
                continue
            if isinstance(groups, BaseException):
                raise groups
            info = next((g for g in groups if as_str(g.get("name")) == group), None)
            if info is None:
                continue
            pel = int(info.get("pending") or 0)
            unread = info.get("lag")
            total += pel + (int(unread) if unread is not None else 0)
            if pel or unread:
                firsts.append((stream, info))
        async with redis.pipeline(transaction=False) as pipe:
            for stream, info in firsts:
                if int(info.get("pending") or 0):  # the PEL's oldest is older than any unread
                    pipe.xpending(stream, group)
                else:
                    last = as_str(info.get("last-delivered-id") or "0-0")
                    pipe.xrange(stream, min=f"({last}", count=1)
            found = await pipe.execute(raise_on_error=False) if firsts else []
        for reply in found:
            first: int | None = None
            if isinstance(reply, dict) and reply.get("min"):
                first = id_ms(as_str(reply["min"]))
            elif isinstance(reply, list) and reply:
                first = id_ms(as_str(reply[0][0]))
            if first is not None:
                oldest = first if oldest is None else min(oldest, first)
    return total, oldest


async def trim(
    redis: aioredis.Redis,
    stream: str,
    channels: Iterable[str],
    keep_s: float,
    now_s: float | None = None,
) -> str | None:
    """Trim one outbox below the oldest entry that any consumer group still needs and that is
    younger than `keep_s` (so `tail --alerts` still shows recent history). Groups of channels no
    longer configured (`notify:<gone>`) do not hold trimming back; other groups on the stream
    (not ours) do. The cut comes from our clock and the groups' state, never from an entry's
    content. Returns the MINID used, or None when nothing could be trimmed."""
    try:
        groups = await redis.xinfo_groups(stream)
    except ResponseError:
        return None
    now_s = time.time() if now_s is None else now_s
    floor = (max(0, int((now_s - keep_s) * 1000)), 0)
    ours = {keys.notify_group(c) for c in channels}
    for g in groups:
        name = as_str(g.get("name"))
        if name.startswith(keys.NOTIFY_GROUP_PREFIX) and name not in ours:
            continue
        need: tuple[int, int] | None = None
        if int(g.get("pending") or 0):
            summary = await redis.xpending(stream, name)
            if summary and summary.get("min"):  # none: all acked since XINFO (a worker acks on)
                need = entry_key(as_str(summary["min"]))
        if need is None:
            ms, seq = entry_key(as_str(g.get("last-delivered-id") or "0-0"))
            need = (ms, seq + 1)
        floor = min(floor, need)
    if floor <= (0, 0):
        return None
    minid = f"{floor[0]}-{floor[1]}"
    await redis.xtrim(stream, minid=minid, approximate=True)
    return minid


async def list_dead(redis: aioredis.Redis, count: int = 1000) -> list[DeadLetter]:
    out = []
    for dead_id, fields in entries(await redis.xrange(keys.DEAD, count=count)):
        f = {as_str(k): v for k, v in fields.items()}
        if "kind" in f:  # a snapshot set aside by the poller (commit.set_aside), not an alert
            continue
        raw = f.get("event", b"")
        out.append(
            DeadLetter(
                dead_id=as_str(dead_id),
                alert_id=as_str(f.get("id", b"")),
                channel=as_str(f.get("channel", b"")),
                symbol=as_str(f.get("symbol", b"")),
                reason=as_str(f.get("reason", b"")),
                attempts=int(as_str(f.get("attempts", b"0")) or 0),
                entry=as_str(f.get("entry", b"")),
                failed_at=as_str(f.get("failed_at", b"")),
                event=raw.encode() if isinstance(raw, str) else raw,
            )
        )
    return out


async def retry_dead(redis: aioredis.Redis, dead: Sequence[DeadLetter]) -> list[str]:
    """Put dead letters back on their symbol's outbox, routed to their one channel; returns the
    new entry ids. Enqueue first, then remove the dead letter (another slot): a crash between
    leaves both, and the copy retried twice is stopped by its sent marker."""
    new_ids = []
    for d in dead:
        stream = keys.outbox(d.symbol or keys.OPS_SYMBOL)
        await ensure_groups(redis, [stream], [d.channel])
        new = await redis.xadd(
            stream,
            {
                "id": d.alert_id,
                "channels": encode_channels([d.channel]),
                "symbol": d.symbol,
                "event": d.event,
            },
        )
        slot = keys.symbol_of_outbox(stream) or keys.OPS_SYMBOL
        await redis.delete(keys.attempts(slot, d.alert_id, d.channel))
        await redis.xdel(keys.DEAD, d.dead_id)
        new_ids.append(as_str(new))
    return new_ids


async def pending_entries(
    redis: aioredis.Redis, channel: str, streams: Iterable[str], count: int = 100
) -> list[dict[str, Any]]:
    """This channel's PEL on these streams (at most `count` rows): stream, entry id, consumer,
    idle seconds, deliveries, alert id."""
    out: list[dict[str, Any]] = []
    for stream in streams:
        if len(out) >= count:
            break
        try:
            rows = await redis.xpending_range(
                stream, keys.notify_group(channel), "-", "+", count - len(out)
            )
        except ResponseError:
            continue
        for r in rows:
            eid = as_str(r["message_id"])
            got = entries(await redis.xrange(stream, min=eid, max=eid))
            alert_id = as_str(got[0][1].get(b"id", b"")) if got else "(deleted)"
            out.append(
                {
                    "stream": stream,
                    "entry": eid,
                    "alert_id": alert_id,
                    "consumer": as_str(r["consumer"]),
                    "idle_s": int(r["time_since_delivered"]) / 1000,
                    "deliveries": int(r["times_delivered"]),
                }
            )
    return out
