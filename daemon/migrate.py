"""Move what the single outbox of earlier releases still owes onto the per-symbol outboxes.

Before the per-symbol layout every alert went to one stream, `gex:alerts`
(`keys.LEGACY_ALERTS`), with one consumer group `notify:<channel>` per channel. An entry is
still owed to a channel when that channel has a group on the legacy stream, the entry is in
the group's pending list or newer than its last-delivered id, and no legacy sent marker says
the receiver accepted it. A channel with no group there never had the entry coming (its group
would have been created after it), so nothing is owed to it.

Each owed entry is enqueued once on its symbol's outbox (`keys.outbox`, "*" or empty: the
operator outbox) with the channels still owed, by the enqueue-once script with a dedup key
in the symbol's slot (`keys.migrated`): a second run, or a run after a crash midway, enqueues
nothing twice. Before the first write to an outbox the owed channels' groups are created on
it at `$`, so the moved entries are new to them. An entry whose event does not decode goes
to the dead letters (`gex:dead`) of each channel it is owed to, with the reason. Legacy sent
markers of the entries are copied to the per-symbol names, with what is left of their TTL.

When everything is moved the legacy stream is renamed to `keys.LEGACY_ALERTS_BACKUP` with a
TTL, and only when nothing was added to it since it was read; it is never deleted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from gex_alertd import keys
from gex_alertd.commit import DEDUP_TTL_MS
from gex_alertd.connections import as_str, entries, entry_key
from gex_alertd.enqueue_once import EnqueueOnce
from gex_alertd.model import AlertEvent, decode_alert, decode_channels, iso_utc

BACKUP_TTL_MS = 7 * 86_400 * 1000  # the renamed legacy stream: a week to look back into it
PAGE = 1000  # legacy entries / pending ids per read

# RENAME + PEXPIRE of the legacy stream, only when its newest entry is still the one we read
# up to: an old daemon still writing to it (a rolling upgrade) leaves it in place
_RETIRE = """
local top = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if #top == 0 and redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local newest = top[1] and top[1][1] or ''
if newest ~= ARGV[1] then return -1 end
redis.call('RENAME', KEYS[1], KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 1
"""


@dataclass
class Move:
    """One legacy entry owed to `channels`; `event` None when it does not decode (`reason`)."""

    entry_id: str
    alert_id: str
    symbol: str  # the outbox it moves to (OPS_SYMBOL for none)
    channels: list[str]
    event: AlertEvent | None
    raw_event: bytes = b""
    reason: str = ""


@dataclass
class Marker:
    symbol: str
    alert_id: str
    channel: str
    ttl_ms: int


@dataclass
class Plan:
    found: bool = False  # the legacy stream exists
    entries: int = 0  # legacy entries read
    newest: str = ""  # the newest legacy entry id read
    moves: list[Move] = field(default_factory=list)
    markers: list[Marker] = field(default_factory=list)
    sent: int = 0  # (entry, channel) pairs a legacy sent marker says were delivered
    delivered: int = 0  # (entry, channel) pairs acked or never owed


@dataclass
class Summary:
    plan: Plan
    moved: int = 0  # entries enqueued on a per-symbol outbox by this run
    before: int = 0  # entries an earlier run had moved already
    dead: int = 0  # undecodable entries dead-lettered (per channel)
    markers: int = 0  # sent markers copied
    retired: str = ""  # what became of the legacy stream

    def line(self) -> dict[str, object]:
        p = self.plan
        return {
            "legacy_entries": p.entries,
            "moved": self.moved,
            "moved_before": self.before,
            "owed": sum(len(m.channels) for m in p.moves),
            "already_sent": p.sent,
            "dead": self.dead,
            "markers_copied": self.markers,
            "legacy_stream": self.retired,
        }


@dataclass
class _Group:
    last: tuple[int, int]
    pending: set[str]


async def _groups(redis: aioredis.Redis) -> dict[str, _Group]:
    """channel -> its legacy group's last-delivered id and pending entry ids."""
    out: dict[str, _Group] = {}
    for info in await redis.xinfo_groups(keys.LEGACY_ALERTS):
        name = as_str(info["name"])
        if not name.startswith(keys.NOTIFY_GROUP_PREFIX):
            continue
        pending: set[str] = set()
        lo = "-"
        while True:
            rows = await redis.xpending_range(keys.LEGACY_ALERTS, name, lo, "+", PAGE)
            pending.update(as_str(r["message_id"]) for r in rows)
            if len(rows) < PAGE:
                break
            lo = "(" + as_str(rows[-1]["message_id"])
        last = entry_key(as_str(info["last-delivered-id"]))
        out[name[len(keys.NOTIFY_GROUP_PREFIX) :]] = _Group(last, pending)
    return out


async def plan(redis: aioredis.Redis) -> Plan:
    """What the legacy outbox still owes, read only."""
    out = Plan()
    if not await redis.exists(keys.LEGACY_ALERTS):
        return out
    out.found = True
    groups = await _groups(redis)
    lo = "-"
    while True:
        batch = entries(await redis.xrange(keys.LEGACY_ALERTS, min=lo, count=PAGE))
        await _page(redis, batch, groups, out)
        if batch:
            out.newest = batch[-1][0].decode()
            lo = "(" + out.newest
        if len(batch) < PAGE:
            return out


async def _page(
    redis: aioredis.Redis,
    batch: Sequence[tuple[bytes, dict[bytes, bytes]]],
    groups: dict[str, _Group],
    out: Plan,
) -> None:
    """The moves of one page of legacy entries: the channels each is owed to, less those a
    legacy sent marker says were delivered (their markers are copied instead)."""
    todo: list[tuple[Move, list[str]]] = []
    for raw_id, fields in batch:
        out.entries += 1
        eid = raw_id.decode()
        channels = decode_channels(fields.get(b"channels", b""))
        owed = [
            ch
            for ch in dict.fromkeys(channels)
            if ch in groups and (eid in groups[ch].pending or entry_key(eid) > groups[ch].last)
        ]
        out.delivered += len(channels) - len(owed)
        if owed:
            todo.append((_move(eid, fields), owed))
    async with redis.pipeline(transaction=False) as pipe:  # one key per command: cluster-safe
        for move, owed in todo:
            for ch in owed:
                pipe.pttl(keys.legacy_sent_marker(move.alert_id, ch))
        ttls = iter(await pipe.execute())
    for move, owed in todo:
        for ch in owed:
            ttl = next(ttls)
            if ttl == -2:  # no marker: still owed
                move.channels.append(ch)
            else:
                out.sent += 1
                out.markers.append(Marker(move.symbol, move.alert_id, ch, ttl))
        if move.channels:
            out.moves.append(move)


def _move(eid: str, fields: dict[bytes, bytes]) -> Move:
    raw = fields.get(b"event", b"")
    try:
        event = decode_alert(raw)
    except ValueError as exc:  # msgspec's DecodeError/ValidationError are ValueErrors
        symbol = as_str(fields.get(b"symbol", b"")) or keys.OPS_SYMBOL
        aid = as_str(fields.get(b"id", b"")) or eid
        reason = f"undecodable event in {keys.LEGACY_ALERTS}: {exc}"
        return Move(eid, aid, symbol, [], None, raw, reason)
    return Move(eid, event.id, event.symbol or keys.OPS_SYMBOL, [], event)


async def _create_groups(redis: aioredis.Redis, moves: Sequence[Move]) -> None:
    """Each owed channel's group on each target outbox, at `$`: the moved entries come after
    it, so they are new to the group (an existing group keeps its place: BUSYGROUP)."""
    wanted = sorted({(keys.outbox(m.symbol), ch) for m in moves if m.event for ch in m.channels})
    for stream, ch in wanted:
        try:
            await redis.xgroup_create(stream, keys.notify_group(ch), id="$", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise


async def _copy_markers(redis: aioredis.Redis, markers: Sequence[Marker]) -> int:
    async with redis.pipeline(transaction=False) as pipe:
        for m in markers:
            ttl = m.ttl_ms if m.ttl_ms > 0 else DEDUP_TTL_MS  # -1: it had no TTL
            pipe.set(keys.sent_marker(m.symbol, m.alert_id, m.channel), b"1", nx=True, px=ttl)
        return sum(1 for r in await pipe.execute() if r)


async def _dead(redis: aioredis.Redis, move: Move) -> int:
    """Dead letters of an undecodable entry, once: the dedup key is set after them (a crash
    in between repeats a dead letter, never loses one)."""
    dedup = keys.migrated(move.symbol, move.entry_id)
    if await redis.exists(dedup):
        return 0
    for ch in move.channels:
        await redis.xadd(
            keys.DEAD,
            {
                "id": move.alert_id,
                "channel": ch,
                "symbol": move.symbol,
                "reason": move.reason,
                "attempts": "0",
                "entry": move.entry_id,
                "failed_at": iso_utc(datetime.now(UTC)),
                "event": move.raw_event,
            },
        )
    await redis.set(dedup, b"1", px=DEDUP_TTL_MS)
    return len(move.channels)


async def migrate(redis: aioredis.Redis, *, limit: int | None = None) -> Summary:
    """Move what the legacy outbox owes (the first `limit` moves only, and no retiring of
    the legacy stream, when given: a run cut short, as by a crash)."""
    p = await plan(redis)
    out = Summary(p)
    if not p.found:
        out.retired = "absent"
        return out
    await _create_groups(redis, p.moves)
    out.markers = await _copy_markers(redis, p.markers)
    enqueue = EnqueueOnce(redis)
    for i, move in enumerate(p.moves):
        if limit is not None and i >= limit:
            out.retired = "kept (stopped early)"
            return out
        if move.event is None:
            out.dead += await _dead(redis, move)
            continue
        dedup = keys.migrated(move.symbol, move.entry_id)
        if await enqueue(move.event, move.channels, dedup=dedup):
            out.moved += 1
        else:
            out.before += 1
    out.retired = await _retire(redis, p.newest)
    return out


async def _retire(redis: aioredis.Redis, newest: str) -> str:
    script = redis.register_script(_RETIRE)
    done = await script(
        keys=[keys.LEGACY_ALERTS, keys.LEGACY_ALERTS_BACKUP], args=[newest, BACKUP_TTL_MS]
    )
    if done == 1:
        return f"renamed to {keys.LEGACY_ALERTS_BACKUP} (kept {BACKUP_TTL_MS // 86_400_000} days)"
    if done == 0:
        return "gone (moved by another run)"
    return "kept: entries were added to it meanwhile (run migrate again)"
