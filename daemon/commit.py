"""The atomic commit: snapshot XADD + rule state + outbox alerts in one Lua script.

Flow for one snapshot of (symbol, expiry):
  1. read the rule state hash (`gex:{SYM}:state`, with its version `_v` and the as_of of the
     last committed snapshot `_last`);
  2. a snapshot not newer than `_last` is a repeat: nothing to do;
  3. evaluate the rules (pure, `rules.engine`) against that state and the previous snapshot;
  4. run `commit.lua`, which re-checks the stream top and the version and then writes
     everything or nothing. A version conflict means another daemon committed in between:
     re-read and re-evaluate (bounded).
Crash points: before the script, nothing was written and the next poll redoes the work;
the script itself is atomic (and one AOF record); after it, the state already says the
alert fired, so a restart never fires it again, and the alert is in the outbox, so it is
never lost.
"""

from __future__ import annotations

import struct
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import msgspec
import numpy as np
import redis.asyncio as aioredis
import structlog
import zstandard

from gex_alertd import keys, redaction, store
from gex_alertd.batching import ScriptBatcher
from gex_alertd.codec import encode_matrices, shuffle, unshuffle
from gex_alertd.config import RedisConfig
from gex_alertd.connections import hash_fields
from gex_alertd.model import AlertEvent, FlowGex, iso_utc, outbox_fields, strike_matrix
from gex_alertd.ops import metrics
from gex_alertd.rules.base import RuleBase
from gex_alertd.rules.columns import FIELDS, StrikeColumns, attach, columns
from gex_alertd.rules.engine import Engine, Outcome, RuleSlot
from gex_alertd.rules.levels import Levels, levels_many
from gex_alertd.rules.registry import columns_only

log = structlog.get_logger()

LUA = resources.files("gex_alertd").joinpath("commit.lua").read_text()
DEDUP_TTL_MS = 7 * 86_400 * 1000  # an alert id is never enqueued twice within a week
VERSION_FIELD, LAST_FIELD = b"_v", b"_last"
RULE_PREFIX = "r:"
PREV_CACHE_MAX = 20_000  # compact previous snapshots kept for oi_change (basis poll)
PREV_FULL_MAX = 64  # whole previous snapshots, when a rule type reads rows
PREV_RAW_MAX = 256  # up to this many streams, compact entries may be the snapshot's own view
# the cache's bytes: every entry counted at its packed size (~1 KB at 200 strikes), the
# unpacked rows (the views above, 11.2 KB at 200 strikes, and past them the rows the rules read,
# float32 where exact: 2.4 KB a 200-strike oi_change entry) get what is left. 2,000 streams keep
# all their rows unpacked (~2 MB packed, 4.8 MB of rows), 5,000 about 900 (~5.1 MB packed, the
# rest of 7 MiB in rows; 8 MiB cost ~1 MB more RSS there: sized for the RSS goal)
PREV_ROWS_BYTES = 7 * 2**20
# up to this many streams, the kept rule state stays as objects (~0.7 KB more each than encoded:
# +1.4 MB at 2,000 streams, which saves ~10 us of thaw and freeze a snapshot there)
KEPT_RAW_MAX = 2048
DEAD_KIND_SNAPSHOT = "snapshot"  # a gex:dead entry that is a snapshot, not an alert
# a fast level: on the byte-shuffled rows -1 packs within 1 % of level 1's size in less than
# half its time (2.1 against 5.0 us for 200 strikes); unpacking does not depend on it
_prev_cctx = zstandard.ZstdCompressor(level=-1)
_prev_dctx = zstandard.ZstdDecompressor()
_PACKED_HEAD = struct.Struct("<qI")  # a packed previous snapshot: as_of ms, its scalars' length
_bare_encoder = msgspec.msgpack.Encoder()
_bare_decoder = msgspec.msgpack.Decoder()  # a datetime comes back from its timestamp extension


class CommitConflict(RuntimeError):
    """The state kept changing under us (several writers, or a bug): nothing was written."""


class CommitResult(msgspec.Struct, frozen=True):
    stored: bool
    alerts: list[AlertEvent]
    suppressed: int = 0


class StoredState(msgspec.Struct):
    version: str  # '' when the hash does not exist yet
    last_ms: int | None
    slots: dict[str, RuleSlot]


def decode_state(engine: Engine, raw: dict[bytes, bytes]) -> StoredState:
    slots: dict[str, RuleSlot] = {}
    for k, v in raw.items():
        name = k.decode(errors="replace")  # a field added by hand may be no text
        if name.startswith(RULE_PREFIX):
            slot = engine.decode_slot(name[len(RULE_PREFIX) :], v)
            if slot is not None:
                slots[name[len(RULE_PREFIX) :]] = slot
    last = raw.get(LAST_FIELD)
    # a `_last` edited by hand into no number counts as none (the script's stream-top check
    # still refuses a repeat), not a ValueError that crashed every poll of the symbol
    last_ms = int(last) if last and last.isdigit() else None
    try:
        version = raw.get(VERSION_FIELD, b"").decode()
    except UnicodeDecodeError:  # edited by hand: commit.lua takes '' for it and counts anew,
        version = ""  # not an error that crashed every poll of the symbol
    return StoredState(version, last_ms, slots)


def build_args(
    engine: Engine,
    snap: FlowGex,
    expiry: str | None,
    version: str,
    outcome: Outcome,
    redis_cfg: RedisConfig,
) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV for commit.lua (layout documented at the top of the script).

    Everything but the version and the entry ms travels as one msgpack blob: redis-py packs
    each argument on its own (~25 us each in Python), and a commit has ~40 of them. Numbers go
    as strings, so Lua never formats a large one in exponent form."""
    names, pending = prepare_args(engine, snap, expiry, version, outcome, redis_cfg)
    [args] = finish_batch([pending])
    if isinstance(args, BaseException):
        raise args
    return names, args


class PendingArgs:
    """What a commit's ARGV is made of, kept until its commit batch goes (`finish_batch`
    builds them all there, one after the other: ~15 us of CPU a commit in the daemon against
    ~23 built one at a time between the polls' other work, and the strike blocks and walls of
    the whole batch in one numpy pass). Nothing it holds changes meanwhile: the engine makes
    new slots, never changes one in place."""

    __slots__ = ("engine", "expiry", "outcome", "redis_cfg", "snap", "version")

    def __init__(
        self,
        engine: Engine,
        snap: FlowGex,
        expiry: str | None,
        version: str,
        outcome: Outcome,
        redis_cfg: RedisConfig,
    ) -> None:
        self.engine, self.snap, self.expiry = engine, snap, expiry
        self.version, self.outcome, self.redis_cfg = version, outcome, redis_cfg

    def build(self) -> list[Any] | _Unfinished:
        """The ARGV, or all of it but the strike block and walls (a decoded snapshot's: worked
        out per batch)."""
        snap = self.snap
        # a decoded snapshot's walls are worked out with its strike block, per batch
        scalars, block = store.scalar_fields(snap, walls=strike_matrix(snap) is None)
        fields = _packed_fields(scalars)
        state: list[Any] = []
        for name, slot in self.outcome.slots.items():
            state += (RULE_PREFIX + name, _lua_str(self.engine.encode_slot(slot)))
        alerts: list[Any] = []
        for em in self.outcome.emitted:
            out: list[Any] = []
            for field, value in outbox_fields(em.event, em.channels).items():
                raw = value if isinstance(value, bytes) else str(value).encode()
                out += (field, _lua_str(raw))
            groups = [keys.notify_group(c) for c in em.channels]
            alerts.append([str(DEDUP_TTL_MS), str(em.cooldown_ms), em.event.id, out, groups])
        trim = store.trim_spec(self.redis_cfg)
        ms = str(snap.as_of_ms)
        if isinstance(block, bytes):  # rows made in code: their block is encoded already
            return _argv(self.version, ms, trim, fields, state, alerts, block)
        return _Unfinished(self.version, ms, trim, fields, state, alerts, block, snap)


class _Unfinished:
    """ARGV for commit.lua but for its snapshot's strike block and walls."""

    __slots__ = ("alerts", "block", "fields", "ms", "snap", "state", "trim", "version")

    def __init__(
        self,
        version: str,
        ms: str,
        trim: list[str],
        fields: list[Any],
        state: list[Any],
        alerts: list[Any],
        block: tuple[np.ndarray, dict[str, Any]],
        snap: FlowGex,
    ) -> None:
        self.version, self.ms, self.trim = version, ms, trim
        self.fields, self.state, self.alerts, self.block = fields, state, alerts, block
        self.snap = snap  # for its walls

    def finish(self, block: bytes, walls: Levels) -> list[Any]:
        at, walled = _WALLS_AT, _packed_fields(store.wall_fields(walls))
        fields = [*self.fields[:at], *walled, *self.fields[at:]]
        return _argv(self.version, self.ms, self.trim, fields, self.state, self.alerts, block)


def _argv(
    version: str,
    ms: str,
    trim: list[str],
    fields: list[Any],
    state: list[Any],
    alerts: list[Any],
    block: bytes,
) -> list[Any]:
    entry = [*fields, _STRIKES_NAME, _lua_str(block)]  # the strike block: the entry's last field
    return [version, ms, _packer.encode([trim, entry, state, alerts])]


def finish_batch(arglists: list[Any]) -> list[Any]:
    """The ARGV of each call of a commit batch (`ScriptBatcher`'s `prepare`): each PendingArgs
    built, their strike blocks encoded together (`codec.encode_matrices`: the same bytes as
    one at a time, at ~2/3 of the CPU for a batch of 16) and their walls worked out together;
    any other ARGV as it is. A commit whose arguments cannot be built gets the error in its
    place (that commit fails alone: `ScriptBatcher`)."""
    out = list(arglists)
    unfinished: list[tuple[int, _Unfinished]] = []
    for i, args in enumerate(arglists):
        if isinstance(args, PendingArgs):
            try:
                built = args.build()
            except Exception as exc:  # that commit's error, as if built alone
                out[i] = exc
                continue
            if isinstance(built, _Unfinished):
                unfinished.append((i, built))
            else:
                out[i] = built
    if unfinished:
        blocks = encode_matrices([u.block for _, u in unfinished])
        walls = levels_many([u.snap for _, u in unfinished])
        for (i, u), block, found in zip(unfinished, blocks, walls, strict=True):
            out[i] = u.finish(block, found)
    return out


def prepare_args(
    engine: Engine,
    snap: FlowGex,
    expiry: str | None,
    version: str,
    outcome: Outcome,
    redis_cfg: RedisConfig,
) -> tuple[list[str], PendingArgs]:
    """`build_args`, but only the KEYS now (a batch on a cluster is routed by them); the ARGV
    is built by `finish_batch` when the commit's batch goes."""
    names = [keys.snap(snap.symbol, expiry), keys.state(snap.symbol, expiry)]
    names.append(keys.outbox(snap.symbol))
    for em in outcome.emitted:
        names += [
            keys.alert_dedup(snap.symbol, em.event.id),
            keys.cooldown(snap.symbol, em.event.rule, expiry),
        ]
    return names, PendingArgs(engine, snap, expiry, version, outcome, redis_cfg)


def _packed_fields(scalars: dict[bytes, bytes]) -> list[Any]:
    fields: list[Any] = []
    for k, v in scalars.items():
        key = _FIELD_NAMES.get(k)
        if key is None:
            key = _FIELD_NAMES[k] = _lua_str(k)
        fields += (key, _lua_str(v))
    return fields


_packer = msgspec.msgpack.Encoder()
_FIELD_NAMES: dict[bytes, msgspec.Raw] = {}  # the snapshot entry's few field names, packed once


def _lua_str(value: bytes) -> msgspec.Raw:
    """`value` as a msgpack *str* (any bytes): the cmsgpack of Redis 7.0's Lua refuses the
    msgpack bin type that bytes would otherwise become; a Lua string holds any bytes."""
    n = len(value)
    if n < 32:
        head = bytes((0xA0 | n,))
    elif n < 0x100:
        head = b"\xd9" + n.to_bytes(1, "big")
    elif n < 0x10000:
        head = b"\xda" + n.to_bytes(2, "big")
    else:
        head = b"\xdb" + n.to_bytes(4, "big")
    return msgspec.Raw(head + value)


_STRIKES_NAME = _lua_str(store.F_STRIKES)
_WALLS_AT = 2 * store.WALLS_AT  # in packed fields: a key and a value each


class Committer:
    def __init__(
        self,
        redis: aioredis.Redis,
        rules: Sequence[RuleBase],
        redis_cfg: RedisConfig,
        *,
        max_attempts: int = 5,
        kept_raw_max: int = KEPT_RAW_MAX,
    ):
        self.redis = redis
        self.engine = Engine(list(rules))
        self.redis_cfg = redis_cfg
        self.max_attempts = max_attempts
        # commits of several snapshots share a round trip; each script is still atomic
        self._batcher = ScriptBatcher(
            redis,
            LUA,
            wait_replicas=redis_cfg.replicas_to_wait,
            wait_timeout_ms=redis_cfg.wait_timeout_ms,
            prepare=finish_batch,
        )
        # the last snapshot this process committed per (symbol, expiry): oi_change basis poll
        # compares against it; valid only while it is still the stream top (`_last`)
        self._prev = PrevCache(fields=self.engine.prev_columns)
        # the rules read a previous snapshot's strikes only through their column view, so the
        # cache may keep that view (compressed) instead of rows
        self._columns_only = columns_only(self.engine.rules)
        # the state this process last committed per (symbol, expiry), with its version: the
        # next commit evaluates against it without reading the hash first (one round trip
        # saved); the script's version check catches any other writer, and we re-read then.
        # Kept as objects while at most `kept_raw_max` streams are kept (no work per commit:
        # thawing and freezing cost ~10 us, ~3% of the CPU per snapshot), and encoded past that
        # (`_freeze`): ~0.2 KB a stream, against ~0.9 KB of slot objects. A stream's first
        # state is encoded: the first cycle of a watchlist cannot know how many streams are to
        # come, and a long one (5,000) must not hold its first thousands as objects
        self.kept_raw_max = kept_raw_max
        self._state: dict[tuple[str, str | None], bytes | StoredState] = {}
        # encoded, a kept state is (version, last ms, one slot or None per rule in this order),
        # decoded in one call into typed slots (one decode per rule and a dict of their bytes
        # cost twice as much, and a commit thaws one past kept_raw_max streams)
        self._kept_names = [r.name for r in self.engine.rules]
        each = tuple(self.engine.stored_slot(n) | None for n in self._kept_names)
        slots: Any = tuple.__class_getitem__(each)  # a type built at run time
        kept_type: Any = tuple[str, int | None, slots]
        self._kept_decoder: msgspec.msgpack.Decoder[Any] = msgspec.msgpack.Decoder(kept_type)

    async def _previous(
        self, snap: FlowGex, expiry: str | None, last_ms: int | None
    ) -> FlowGex | None:
        if last_ms is None or not self.engine.needs_prev(snap.symbol):
            return None
        cached = self._prev.get((snap.symbol, expiry), last_ms)
        if cached is not None:
            return cached
        try:
            if self._columns_only:
                return await store.latest_columns(self.redis, snap.symbol, expiry)
            return await store.latest(self.redis, snap.symbol, expiry)
        except store.StoredEntryError as exc:
            # the top written by something this build cannot read (a newer build's block after
            # a rollback, an entry made by hand): compared with none, as a stream's first
            # snapshot is, not an error before every commit of the symbol for good
            log.warning(
                "previous snapshot undecodable; this one is compared with none",
                stream=keys.snap(snap.symbol, expiry),
                error=str(exc),
            )
            return None

    async def commit(self, snap: FlowGex, expiry: str | None) -> CommitResult:
        started = time.perf_counter()
        skey = keys.state(snap.symbol, expiry)
        stream = (snap.symbol, expiry)
        for attempt in range(1, self.max_attempts + 1):
            kept = self._state.pop(stream, None)
            if kept is not None:
                state = self._thaw(kept)
            else:
                state = decode_state(self.engine, hash_fields(await self.redis.hgetall(skey)))
            if state.last_ms is not None and snap.as_of_ms <= state.last_ms:
                if kept is not None:
                    self._state[stream] = kept
                else:
                    self._keep(stream, state)
                return CommitResult(False, [])
            prev = await self._previous(snap, expiry, state.last_ms)
            outcome = self.engine.evaluate(state.slots, snap, prev, expiry)
            # let go of the previous view now, not after the batch's round trip: the cache
            # fills the next one into the same matrix when nothing holds it (PrevCache._matrix)
            del prev
            staged = self._stage(stream, snap)
            # the strike block is encoded with the others of the commit batch (`finish_batch`)
            names, args = prepare_args(
                self.engine, snap, expiry, state.version, outcome, self.redis_cfg
            )
            reply = await self._batcher.call(names, args)
            status = reply[0].decode() if isinstance(reply[0], bytes) else str(reply[0])
            if status == "repeat":
                return CommitResult(False, [])
            if status == "conflict":
                log.info("commit_conflict", symbol=snap.symbol, expiry=expiry, attempt=attempt)
                continue
            self._remember(stream, snap, staged)
            version = reply[1].decode() if isinstance(reply[1], bytes) else str(reply[1])
            self._keep(
                stream,
                StoredState(version, snap.as_of_ms, {**state.slots, **outcome.slots}),
                again=kept is not None,
            )
            metrics.SNAPSHOTS.inc()
            metrics.COMMIT_LATENCY.observe(time.perf_counter() - started)
            enqueued = {x.decode() if isinstance(x, bytes) else str(x) for x in reply[2]}
            events = [em.event for em in outcome.emitted if em.event.id in enqueued]
            if outcome.emitted or outcome.suppressed:
                self._log_outcome(snap.symbol, expiry, outcome, enqueued)
            return CommitResult(True, events, len(outcome.suppressed))
        raise CommitConflict(
            f"{snap.symbol}: rule state changed under {self.max_attempts} commit attempts in a row"
        )

    def _keep(
        self, stream: tuple[str, str | None], state: StoredState, *, again: bool = False
    ) -> None:
        """Keep `state` for the stream's next commit: as it is when the stream's state was
        kept before (`again`) and fewer than `kept_raw_max` other streams are kept (so at most
        that many are objects; the engine never changes a slot or a rule's state in place, it
        makes new ones), encoded otherwise."""
        raw = again and len(self._state) < self.kept_raw_max
        self._state[stream] = state if raw else self._freeze(state)

    def _freeze(self, state: StoredState) -> bytes:
        """`state` as one bytes object, each slot as it is stored in the hash."""
        slots = state.slots
        return _packer.encode(
            (state.version, state.last_ms, tuple(slots.get(n) for n in self._kept_names))
        )

    def _thaw(self, kept: bytes | StoredState) -> StoredState:
        if isinstance(kept, StoredState):
            return kept
        version, last_ms, stored = self._kept_decoder.decode(kept)
        slots = {
            name: RuleSlot(s.type, s.last_fired_ms, s.state, s.open)
            for name, s in zip(self._kept_names, stored, strict=True)
            if s is not None
        }
        return StoredState(version, last_ms, slots)

    @staticmethod
    def _log_outcome(symbol: str, expiry: str | None, outcome: Outcome, enqueued: set[str]) -> None:
        # bound here, not per commit: most commits fire nothing and log nothing
        bound = log.bind(symbol=symbol, expiry=expiry)
        for em in outcome.emitted:
            if em.event.id not in enqueued:  # the dedup key says it was enqueued before
                bound.warning("alert_already_enqueued", rule=em.event.rule, alert_id=em.event.id)
                continue
            metrics.ALERTS_FIRED.labels(em.event.rule).inc()
            bound.info(
                "alert_fired", rule=em.event.rule, alert_id=em.event.id, summary=em.event.summary
            )
        for sup in outcome.suppressed:
            bound.info(
                "alert_suppressed", rule=sup.event.rule, alert_id=sup.event.id, reason=sup.reason
            )

    async def set_aside(self, snap: FlowGex, expiry: str | None, reason: str) -> None:
        """Keep a snapshot that can never commit (Redis refuses its entry for good: see
        redis_errors) in `gex:dead`, marked `kind: snapshot`, with the reason and the whole
        snapshot as JSON, so nothing fetched is lost and the poller goes on with the next."""
        await self.redis.xadd(
            keys.DEAD,
            {
                "kind": DEAD_KIND_SNAPSHOT,
                "symbol": snap.symbol,
                "expiry": expiry or "",
                "as_of": iso_utc(snap.as_of),
                "reason": redaction.redact(reason),
                "failed_at": iso_utc(datetime.now(UTC)),
                "snapshot": msgspec.json.encode(snap),
            },
        )

    async def drain(self) -> None:
        """Wait for the commits already handed to Redis (shutdown)."""
        await self._batcher.drain()

    def _stage(self, stream: tuple[str, str | None], snap: FlowGex) -> np.ndarray | None:
        if self._columns_only and self.engine.needs_prev(snap.symbol):
            return self._prev.stage(stream, snap)
        return None

    def _remember(
        self, stream: tuple[str, str | None], snap: FlowGex, staged: np.ndarray | None = None
    ) -> None:
        if self.engine.needs_prev(snap.symbol):  # the key object `_state` holds too
            self._prev.put(stream, snap, compact=self._columns_only, staged=staged)


_Kept = StrikeColumns | np.ndarray  # an unpacked entry's rows: the snapshot's view, or a copy


class PrevCache:
    """The previous snapshot per stream, small enough to keep for every watched target.

    A decoded 200-strike snapshot is ~100 KB of rows and matrix (5,000 symbols: 500 MB); the
    rules read a previous snapshot only through its column view, and of that view only the
    columns their types name (`RuleType.prev_columns`, `fields` here: oi_change basis poll reads
    strike, call and put OI, 3 of the 7 rows). The cache keeps those rows and the snapshot's
    scalars; a view given back has NaN in the other rows. An entry is one of three forms:
      - while the cache holds fewer than `max_raw` streams, the snapshot's own column view
        (read-only, all 7 rows, ~11 KB at 200 strikes) and a bare snapshot, as they are: no
        work per snapshot, not even a copy (the hot path of a short, fast watchlist);
      - past that, the rows the rules read, copied (float32 when every value survives the
        round trip exactly, as strikes and contract counts do: 2.4 KB at 200 strikes, else
        float64), and the bare snapshot: ~3 us a snapshot to copy and spread back into a view;
      both only while the unpacked rows held (views and copies alike) fit in what is left of
      `max_rows_bytes` once every entry is counted at its packed size (the packed entries'
      average, or a quarter of the rows before any is packed), and the second form not for a
      stream's first entry;
      - beyond that budget one bytes object: the as_of, then the bare snapshot's fields and the
        byte-shuffled rows zstd-compressed together (~1 KB at 200 strikes; ~11 us per snapshot
        to pack and unpack, against a read from Redis), which keeps a 5,000-symbol watchlist's
        memory flat.
    The budget is in bytes, not streams: a watchlist of wide chains keeps fewer unpacked, one of
    thousands takes as many as fit and packs the rest (the more streams, the less is left for
    rows), and the views its first streams get in their first cycle count in it (so what a
    5,000-symbol watchlist's memory peaks at does not grow with it). An entry of one stream is
    replaced (its bytes given back first) at the stream's next snapshot. Rule sets with a type
    that reads rows keep whole snapshots, a few of them. An entry is valid only for the `as_of`
    it was taken at.
    """

    def __init__(
        self,
        max_compact: int = PREV_CACHE_MAX,
        max_full: int = PREV_FULL_MAX,
        max_raw: int = PREV_RAW_MAX,
        fields: Sequence[str] = FIELDS,
        max_rows_bytes: int = PREV_ROWS_BYTES,
    ) -> None:
        self.max_compact = max_compact
        self.max_full = max_full
        self.max_raw = max_raw
        self.max_rows_bytes = max_rows_bytes
        wanted = {"strike", *fields}  # the strike row gives a packed view its length
        self._rows = np.array([i for i, f in enumerate(FIELDS) if f in wanted], dtype=np.intp)
        # the kept rows are the view's first ones (oi_change: strike, call and put OI)
        self._prefix = self._rows.tolist() == list(range(len(self._rows)))
        # value: packed (bytes), or the snapshot (rows) or its bare copy with its column view
        # or with its kept rows (an array), and its as_of ms (asking the bare copy would give
        # it a __dict__ of its own, ~0.3 KB)
        self._entries: dict[tuple[str, str | None], bytes | tuple[FlowGex, _Kept | None, int]]
        self._entries = {}
        self._raw = 0  # entries holding the snapshot's own view
        # the matrix of the view given back last (a copied or packed entry's), reused while
        # nothing holds it any more: see `_matrix`
        self._spare: np.ndarray | None = None
        self._rows_bytes = 0  # bytes of the unpacked rows held (views and kept rows)
        self._packed = self._packed_bytes = 0  # packed entries, and their bytes

    def _forget(self, entry: bytes | tuple[FlowGex, _Kept | None, int]) -> None:
        if isinstance(entry, tuple):
            held = entry[1]
            if isinstance(held, StrikeColumns):
                self._raw -= 1
                self._rows_bytes -= held.m.nbytes
            elif held is not None:
                self._rows_bytes -= held.nbytes
        else:
            self._packed -= 1
            self._packed_bytes -= len(entry)

    def stage(self, key: tuple[str, str | None], snap: FlowGex) -> np.ndarray | None:
        """The rows `put` would keep of `snap` if it keeps them unpacked, worked out now, while
        the rules have just read its view (still in cache), for a `put` after the commit's
        round trip (when ~16 other snapshots have gone through the cache since: callgrind,
        2,000 streams: ~75 cache lines of the view read again from memory a snapshot). None
        where `put` would not keep rows: a short watchlist (the view itself) or a stream's
        first entry."""
        if len(self._entries) < self.max_raw or key not in self._entries:
            return None
        m = columns(snap).m
        if len(self._rows) * m.shape[1] * 4 > self._room(m.shape[1]):  # to be packed
            return None
        return self._copy(m[: len(self._rows)] if self._prefix else m[self._rows])

    def _room(self, width: int) -> int:
        """The bytes left for unpacked rows: every entry counted at its packed size (their
        average; before any, a quarter of what rows of `width` strikes would be: ~1 KB at
        200 strikes either way), the rows get the rest."""
        if self._packed:
            each = self._packed_bytes // self._packed
        else:
            each = len(self._rows) * width * 2
        return self.max_rows_bytes - self._rows_bytes - len(self._entries) * each

    def _copy(self, kept: np.ndarray) -> np.ndarray:
        """The kept rows as an array of their own: float32 when every value survives the round
        trip exactly (a NaN's bits too), else float64."""
        small = kept.astype(np.float32)
        if small.astype(np.float64).tobytes() == kept.tobytes():
            return small
        return kept.copy() if self._prefix else kept  # `take` made a copy already

    def put(
        self,
        key: tuple[str, str | None],
        snap: FlowGex,
        *,
        compact: bool,
        staged: np.ndarray | None = None,
    ) -> None:
        """Keep `snap` as the stream's previous snapshot; `staged`: `stage`'s rows of it."""
        old = self._entries.pop(key, None)
        if old is not None:
            self._forget(old)
        limit = self.max_compact if compact else self.max_full
        if limit <= 0:
            return
        while len(self._entries) >= limit:
            self._forget(self._entries.pop(next(iter(self._entries))))  # oldest insertion first
        if not compact:
            self._entries[key] = (snap, None, snap.as_of_ms)
            return
        # no rows, and none of the provenance the rules never read of a previous snapshot
        bare = msgspec.structs.replace(snap, strikes=[], data_as_of=None)
        view = columns(snap)  # built by the rules already; a copy of the matrix's rows
        room = self._room(view.m.shape[1])
        if len(self._entries) < self.max_raw and view.m.nbytes <= room:
            view.m.flags.writeable = False  # given to every rule that reads it as `prev`
            self._entries[key] = (bare, view, snap.as_of_ms)
            self._raw += 1
            self._rows_bytes += view.m.nbytes
            return
        # the named rows only (the first ones: a view of them, copied below anyway)
        kept = view.m[: len(self._rows)] if self._prefix else view.m.take(self._rows, axis=0)
        # a stream's first entry is packed: in a watchlist's first cycle the cache cannot tell
        # how many streams are still to come (rows given to the first ones would have to be
        # packed again, and the memory would peak above the budget); from the second on every
        # stream is counted
        if old is not None and kept.nbytes // 2 <= room:
            rows = staged if staged is not None else self._copy(kept)
            if rows.nbytes <= room:
                self._entries[key] = (bare, rows, snap.as_of_ms)
                self._rows_bytes += rows.nbytes
                return
        # its fields in order, msgpack (77 B, against 289 as JSON); as_of comes back in UTC
        scalars = _bare_encoder.encode(msgspec.structs.astuple(bare))
        packed = _prev_cctx.compress(scalars + shuffle(kept))
        # a new, right-sized bytes object: the compressor's own output sits in a buffer sized
        # for the worst case, which a kept bytes object would hold on to
        entry = self._entries[key] = _PACKED_HEAD.pack(snap.as_of_ms, len(scalars)) + packed
        self._packed += 1
        self._packed_bytes += len(entry)

    def get(self, key: tuple[str, str | None], as_of_ms: int) -> FlowGex | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if isinstance(entry, bytes):
            ms, n = _PACKED_HEAD.unpack_from(entry)
            if ms != as_of_ms:
                return None
            raw = memoryview(_prev_dctx.decompress(memoryview(entry)[_PACKED_HEAD.size :]))
            out = FlowGex(*_bare_decoder.decode(raw[:n]))  # fresh: what a rule attaches goes
            count = (len(raw) - n) // 8
            if self._prefix:  # straight into the view's first rows: one copy, not two
                m = self._matrix(count // len(self._rows))
                head = m[: len(self._rows)].view(np.uint8).reshape(count, 8)
                head[...] = np.frombuffer(raw[n:], np.uint8).reshape(8, count).T
                m.flags.writeable = False
                attach(out, StrikeColumns(m))
                return out
            kept = unshuffle(raw[n:], count, "<f8").reshape(len(self._rows), -1)
        else:
            snap, held, ms = entry
            if ms != as_of_ms:
                return None
            if held is None:
                return snap
            # a fresh object each time: what a rule attaches to it is not kept in the cache
            out = msgspec.structs.replace(snap, strikes=[])
            if isinstance(held, StrikeColumns):
                attach(out, held)
                return out
            kept = held
        m = self._matrix(kept.shape[1])
        if self._prefix:
            m[: len(self._rows)] = kept
        else:
            m[self._rows] = kept
        m.flags.writeable = False
        attach(out, StrikeColumns(m))
        return out

    def _matrix(self, width: int) -> np.ndarray:
        """A writable matrix for a copied or packed entry's view, NaN in every row but the
        kept ones (which the caller fills): the one given back last time when nothing holds
        it any more, else a new one (kept for the next time).

        A rule reads a previous view only while it evaluates (the committer lets go of it
        right after), so at 2,000 streams nearly every view is filled into the same hot
        11 KB: a new matrix per commit was 11 KB written into cold memory (its NaN rows and
        the kept ones; callgrind: ~200 cache lines missed a snapshot). The reference count
        is the proof that nothing holds it: a view still held (a rule's slice of it, a
        snapshot it is attached to, anywhere) counts, and then it is never written again."""
        # references when free: `self._spare` and getrefcount's own argument
        if (
            self._spare is not None
            and self._spare.shape[1] == width
            and sys.getrefcount(self._spare) == 2
        ):
            m = self._spare
            m.flags.writeable = True
            return m
        m = np.empty((len(FIELDS), width))
        m.fill(np.nan)
        self._spare = m
        return m

    def __len__(self) -> int:
        return len(self._entries)
