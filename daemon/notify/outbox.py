"""The durable outbox on Redis: one consumer group per channel on `gex:alerts`, sent markers,
attempt counters and the dead-letter stream `gex:dead`.

Group creation: a channel's group is created at `$` the first time the channel is seen
(`XGROUP CREATE ... $ MKSTREAM`, BUSYGROUP ignored). A channel added later therefore gets no
history, while a restart resumes from the group's own last-delivered id, so nothing added while
the daemon was down is skipped. The daemon creates every group before its first poll, so an
alert committed for a configured channel always has a group waiting for it.

Delivery is at-least-once with a duplicate window as small as we can make it: the sent marker
`gex:sent:{alert}:{channel}` (SET NX PX dedup_ttl) is written together with the XACK in one
MULTI right after the receiver accepted. Setting it *before* the send would turn a crash into a
lost alert; setting it after means a crash between the receiver's 2xx and that MULTI (or during
the request) redelivers once, with the same id (`webhook-id`, Message-ID) so a receiver can
drop the repeat. Every later redelivery (own PEL after restart, XAUTOCLAIM by another
consumer, a dead letter retried) checks the marker first and is acked without sending.

Attempts are counted in Redis (`gex:try:{alert}:{channel}`) so a crash loop cannot retry an
alert forever; when they reach max_attempts, or on a permanent failure, the entry is copied to
`gex:dead` with a redacted reason and acked in the same MULTI.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from gex_alertd import keys, redaction
from gex_alertd.connections import as_str, entries
from gex_alertd.model import AlertEvent, decode_alert, decode_channels, encode_channels, iso_utc
from gex_alertd.notify.silences import SILENCED_MAXLEN, Silence, silenced_fields

ATTEMPTS_TTL_MS = 7 * 86_400_000


def id_ms(entry_id: str) -> int:
    return int(entry_id.split("-", 1)[0])


class Entry(msgspec.Struct):
    """One outbox stream entry as read by a channel's consumer."""

    entry_id: str
    alert_id: str
    channels: list[str]
    symbol: str
    raw_event: bytes
    event: AlertEvent | None  # None when the JSON does not decode (dead-lettered at once)
    problem: str | None = None  # why it is unusable

    @classmethod
    def parse(cls, entry_id: Any, fields: dict[Any, Any] | None) -> Entry:
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
                problem = f"malformed event JSON in outbox entry {eid}: {exc}"
        alert_id = as_str(f.get("id", b"")) or (event.id if event else "")
        return cls(eid, alert_id, channels, as_str(f.get("symbol", b"")), raw, event, problem)


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


class Outbox:
    """Redis operations of one channel's consumer."""

    def __init__(self, redis: aioredis.Redis, channel: str, consumer: str, dedup_ttl_s: float):
        self.redis = redis
        self.channel = channel
        self.group = keys.notify_group(channel)
        self.consumer = consumer
        self.dedup_ttl_ms = max(1, int(dedup_ttl_s * 1000))

    async def ensure_group(self) -> bool:
        """Create the group at `$` if it does not exist; True when it was created now."""
        try:
            await self.redis.xgroup_create(keys.ALERTS, self.group, id="$", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" in str(exc):
                return False
            raise
        return True

    @staticmethod
    def _entries(reply: Any) -> list[Entry]:
        out: list[Entry] = []
        if not reply:
            return out
        streams = reply.items() if isinstance(reply, dict) else reply
        for _name, items in streams:
            out.extend(Entry.parse(entry_id, fields) for entry_id, fields in items)
        return out

    async def read_own_pending(self, count: int = 500) -> list[Entry]:
        """Entries delivered to this consumer name before (a crash) and never acked."""
        out: list[Entry] = []
        last = "0"
        while True:
            reply = await self.redis.xreadgroup(
                self.group, self.consumer, {keys.ALERTS: last}, count=count
            )
            batch = self._entries(reply)
            if not batch:
                return out
            out.extend(batch)
            last = batch[-1].entry_id

    async def read_new(self, count: int, block_ms: int | None) -> list[Entry]:
        """New entries for this group; `block_ms=None` returns at once (no BLOCK)."""
        reply = await self.redis.xreadgroup(
            self.group, self.consumer, {keys.ALERTS: ">"}, count=count, block=block_ms
        )
        return self._entries(reply)

    async def autoclaim(self, min_idle_s: float, count: int = 100) -> list[Entry]:
        """Take over entries idle longer than `min_idle_s` (their consumer died or hung)."""
        out: list[Entry] = []
        start = "0-0"
        for _ in range(50):  # bounded: at most 50 x count entries per sweep
            reply = await self.redis.xautoclaim(
                keys.ALERTS,
                self.group,
                self.consumer,
                int(min_idle_s * 1000),
                start_id=start,
                count=count,
            )
            nxt, claimed = as_str(reply[0]), reply[1]
            deleted = reply[2] if len(reply) > 2 else []
            out.extend(Entry.parse(eid, fields) for eid, fields in claimed)
            if deleted:  # gone from the stream: nothing to deliver, drop them from the PEL
                await self.redis.xack(keys.ALERTS, self.group, *deleted)
            if nxt == "0-0":
                break
            start = nxt
        return out

    async def touch(self, entry_ids: Sequence[str]) -> None:
        """Reset the idle time of entries we still hold (waiting in a group window or a backoff),
        so another consumer's XAUTOCLAIM does not take them and send them twice."""
        if entry_ids:
            await self.redis.xclaim(
                keys.ALERTS, self.group, self.consumer, 0, list(entry_ids), justid=True
            )

    async def ack(self, entry_ids: Iterable[str]) -> None:
        ids = list(entry_ids)
        if ids:
            await self.redis.xack(keys.ALERTS, self.group, *ids)

    async def sent_already(self, alert_ids: Sequence[str]) -> list[bool]:
        if not alert_ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for aid in alert_ids:
                pipe.exists(keys.sent_marker(aid, self.channel))
            return [bool(x) for x in await pipe.execute()]

    async def mark_sent(self, entries: Sequence[tuple[str, str]]) -> None:
        """(entry_id, alert_id) pairs accepted by the receiver: marker + XACK + attempts reset."""
        async with self.redis.pipeline(transaction=True) as pipe:
            for _entry, alert_id in entries:
                pipe.set(
                    keys.sent_marker(alert_id, self.channel), b"1", nx=True, px=self.dedup_ttl_ms
                )
                pipe.delete(keys.attempts(alert_id, self.channel))
            pipe.xack(keys.ALERTS, self.group, *[e for e, _ in entries])
            await pipe.execute()

    async def bump_attempts(self, alert_ids: Sequence[str], now: float) -> list[tuple[int, float]]:
        """Count one failed attempt per alert; (attempts so far, wall time of the first failure)
        each. Both live in Redis so a restart neither resets the count nor the retry budget."""
        now_ms = str(int(now * 1000))
        async with self.redis.pipeline(transaction=False) as pipe:
            for aid in alert_ids:
                key = keys.attempts(aid, self.channel)
                pipe.hincrby(key, "n", 1)
                pipe.hsetnx(key, "since_ms", now_ms)
                pipe.hget(key, "since_ms")
                pipe.pexpire(key, ATTEMPTS_TTL_MS)
            res = await pipe.execute()
        out = []
        for i in range(len(alert_ids)):
            n, _, since, _ = res[4 * i : 4 * i + 4]
            out.append((int(n), int(as_str(since or now_ms)) / 1000))
        return out

    async def dead_letter(self, entries: Sequence[Entry], reason: str, attempts: int) -> None:
        reason = redaction.redact(reason)
        now = iso_utc(datetime.now(UTC))
        async with self.redis.pipeline(transaction=True) as pipe:
            for e in entries:
                pipe.xadd(
                    keys.DEAD,
                    {
                        "id": e.alert_id,
                        "channel": self.channel,
                        "symbol": e.symbol,
                        "reason": reason,
                        "attempts": str(attempts),
                        "entry": e.entry_id,
                        "failed_at": now,
                        "event": e.raw_event,
                    },
                )
                pipe.delete(keys.attempts(e.alert_id, self.channel))
            pipe.xack(keys.ALERTS, self.group, *[e.entry_id for e in entries])
            await pipe.execute()

    async def record_silenced(self, held: Sequence[tuple[Entry, Silence]]) -> None:
        """Alerts a silence kept from this channel: recorded on `gex:silenced` and acked in one
        MULTI, so a crash leaves each either pending (checked again) or recorded, never lost."""
        now = iso_utc(datetime.now(UTC))
        async with self.redis.pipeline(transaction=True) as pipe:
            for e, silence in held:
                fields = silenced_fields(
                    e.alert_id, self.channel, e.symbol, silence, now, e.raw_event
                )
                pipe.xadd(keys.SILENCED, fields, maxlen=SILENCED_MAXLEN, approximate=True)
                pipe.delete(keys.attempts(e.alert_id, self.channel))
            pipe.xack(keys.ALERTS, self.group, *[e.entry_id for e, _ in held])
            await pipe.execute()

    async def stats(self) -> tuple[int, float]:
        """(entries not yet acknowledged by this channel, age in seconds of the oldest)."""
        return await group_stats(self.redis, self.channel)


async def ensure_groups(redis: aioredis.Redis, channels: Iterable[str]) -> None:
    """Create the consumer group of every channel (at `$`) that does not have one yet."""
    for ch in channels:
        await Outbox(redis, ch, "-", 1).ensure_group()


async def group_stats(redis: aioredis.Redis, channel: str) -> tuple[int, float]:
    group = keys.notify_group(channel)
    try:
        groups = await redis.xinfo_groups(keys.ALERTS)
    except ResponseError:  # no stream yet
        return 0, 0.0
    info = next((g for g in groups if as_str(g.get("name")) == group), None)
    if info is None:
        return 0, 0.0
    pel = int(info.get("pending") or 0)
    unread = info.get("lag")
    unread_n = int(unread) if unread is not None else 0
    oldest: int | None = None
    if pel:
        summary = await redis.xpending(keys.ALERTS, group)
        if summary and summary.get("min"):
            oldest = id_ms(as_str(summary["min"]))
    if oldest is None and unread_n:
        last = as_str(info.get("last-delivered-id") or "0-0")
        nxt = await redis.xrange(keys.ALERTS, min=f"({last}", count=1)
        if nxt:
            oldest = id_ms(as_str(nxt[0][0]))
    age = max(0.0, time.time() - oldest / 1000) if oldest is not None else 0.0
    return pel + unread_n, age


def _parse_id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


async def trim(
    redis: aioredis.Redis, channels: Iterable[str], keep_s: float, now_s: float | None = None
) -> str | None:
    """Trim `gex:alerts` below the oldest entry that any consumer group still needs and that is
    younger than `keep_s` (so `tail --alerts` still shows recent history). Groups of channels no
    longer configured (`notify:<gone>`) do not hold trimming back; other groups on the stream
    (not ours) do. Returns the MINID used, or None when nothing could be trimmed."""
    try:
        groups = await redis.xinfo_groups(keys.ALERTS)
    except ResponseError:
        return None
    now_s = time.time() if now_s is None else now_s
    floor = (max(0, int((now_s - keep_s) * 1000)), 0)
    ours = {keys.notify_group(c) for c in channels}
    for g in groups:
        name = as_str(g.get("name"))
        if name.startswith(keys.NOTIFY_GROUP_PREFIX) and name not in ours:
            continue
        if int(g.get("pending") or 0):
            summary = await redis.xpending(keys.ALERTS, name)
            need = _parse_id(as_str(summary["min"]))
        else:
            ms, seq = _parse_id(as_str(g.get("last-delivered-id") or "0-0"))
            need = (ms, seq + 1)
        floor = min(floor, need)
    if floor <= (0, 0):
        return None
    minid = f"{floor[0]}-{floor[1]}"
    await redis.xtrim(keys.ALERTS, minid=minid, approximate=True)
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
    """Put dead letters back on `gex:alerts`, routed to their one channel; returns new entry ids."""
    new_ids = []
    for d in dead:
        async with redis.pipeline(transaction=True) as pipe:
            pipe.xadd(
                keys.ALERTS,
                {
                    "id": d.alert_id,
                    "channels": encode_channels([d.channel]),
                    "symbol": d.symbol,
                    "event": d.event,
                },
            )
            pipe.xdel(keys.DEAD, d.dead_id)
            pipe.delete(keys.attempts(d.alert_id, d.channel))
            res = await pipe.execute()
        new_ids.append(as_str(res[0]))
    return new_ids


async def pending_entries(
    redis: aioredis.Redis, channel: str, count: int = 100
) -> list[dict[str, Any]]:
    """This channel's PEL: entry id, consumer, idle seconds, deliveries, alert id."""
    try:
        rows = await redis.xpending_range(keys.ALERTS, keys.notify_group(channel), "-", "+", count)
    except ResponseError:
        return []
    out = []
    for r in rows:
        eid = as_str(r["message_id"])
        got = entries(await redis.xrange(keys.ALERTS, min=eid, max=eid))
        alert_id = as_str(got[0][1].get(b"id", b"")) if got else "(deleted)"
        out.append(
            {
                "entry": eid,
                "alert_id": alert_id,
                "consumer": as_str(r["consumer"]),
                "idle_s": int(r["time_since_delivered"]) / 1000,
                "deliveries": int(r["times_delivered"]),
            }
        )
    return out
