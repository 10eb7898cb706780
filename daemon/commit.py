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

import time
from collections.abc import Sequence
from importlib import resources
from typing import Any

import msgspec
import numpy as np
import redis.asyncio as aioredis
import structlog
import zstandard

from gex_alertd import store
from gex_alertd.batching import ScriptBatcher
from gex_alertd.config import RedisConfig
from gex_alertd.connections import hash_fields
from gex_alertd.model import AlertEvent, FlowGex, outbox_fields
from gex_alertd.ops import metrics
from gex_alertd.rules.base import RuleBase
from gex_alertd.rules.columns import FIELDS, StrikeColumns, attach, columns
from gex_alertd.rules.engine import Engine, Outcome, RuleSlot
from gex_alertd.rules.registry import columns_only

log = structlog.get_logger()

LUA = resources.files("gex_alertd").joinpath("commit.lua").read_text()
DEDUP_TTL_MS = 7 * 86_400 * 1000  # an alert id is never enqueued twice within a week
VERSION_FIELD, LAST_FIELD = b"_v", b"_last"
RULE_PREFIX = "r:"
PREV_CACHE_MAX = 20_000  # compact previous snapshots kept for oi_change (basis poll)
PREV_FULL_MAX = 64  # whole previous snapshots, when a rule type reads rows
_prev_cctx = zstandard.ZstdCompressor(level=1)
_prev_dctx = zstandard.ZstdDecompressor()


class CommitConflict(RuntimeError):
    """The state kept changing under us (several writers, or a bug): nothing was written."""


class CommitResult(msgspec.Struct, frozen=True):
    stored: bool
    alerts: list[AlertEvent]
    suppressed: int = 0


def cooldown_key(symbol: str, rule: str, expiry: str | None) -> str:
    return store.symbol_key(symbol, f"cooldown:{rule}", expiry)


def dedup_key(symbol: str, alert_id: str) -> str:
    return store.symbol_key(symbol, f"alert:{alert_id}")


class StoredState(msgspec.Struct):
    version: str  # '' when the hash does not exist yet
    last_ms: int | None
    slots: dict[str, RuleSlot]


def decode_state(engine: Engine, raw: dict[bytes, bytes]) -> StoredState:
    slots: dict[str, RuleSlot] = {}
    for k, v in raw.items():
        name = k.decode()
        if name.startswith(RULE_PREFIX):
            slot = engine.decode_slot(name[len(RULE_PREFIX) :], v)
            if slot is not None:
                slots[name[len(RULE_PREFIX) :]] = slot
    last = raw.get(LAST_FIELD)
    return StoredState(raw.get(VERSION_FIELD, b"").decode(), int(last) if last else None, slots)


def build_args(
    engine: Engine,
    snap: FlowGex,
    expiry: str | None,
    version: str,
    outcome: Outcome,
    redis_cfg: RedisConfig,
) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV for commit.lua (layout documented at the top of the script)."""
    ms = snap.as_of_ms
    keys = [
        store.snap_key(snap.symbol, expiry),
        store.state_key(snap.symbol, expiry),
        store.ALERTS_KEY,
    ]
    args: list[Any] = [version, ms]
    trim = store.trim_args(redis_cfg, ms)
    args += [len(trim), *trim]
    fields = store.encode_fields(snap)
    args.append(len(fields))
    for k, v in fields.items():
        args += [k, v]
    args.append(len(outcome.slots))
    for name, slot in outcome.slots.items():
        args += [RULE_PREFIX + name, engine.encode_slot(slot)]
    args.append(len(outcome.emitted))
    for em in outcome.emitted:
        keys += [
            dedup_key(snap.symbol, em.event.id),
            cooldown_key(snap.symbol, em.event.rule, expiry),
        ]
        out = outbox_fields(em.event, em.channels)
        args += [DEDUP_TTL_MS, em.cooldown_ms, em.event.id, len(out)]
        for field, value in out.items():
            args += [field, value]
    return keys, args


class Committer:
    def __init__(
        self,
        redis: aioredis.Redis,
        rules: Sequence[RuleBase],
        redis_cfg: RedisConfig,
        *,
        max_attempts: int = 5,
    ):
        self.redis = redis
        self.engine = Engine(list(rules))
        self.redis_cfg = redis_cfg
        self.max_attempts = max_attempts
        # commits of several snapshots share a round trip; each script is still atomic
        self._batcher = ScriptBatcher(redis, LUA)
        # the last snapshot this process committed per (symbol, expiry): oi_change basis poll
        # compares against it; valid only while it is still the stream top (`_last`)
        self._prev = PrevCache()
        # the rules read a previous snapshot's strikes only through their column view, so the
        # cache may keep that view (compressed) instead of rows
        self._columns_only = columns_only(self.engine.rules)
        # the state this process last committed per (symbol, expiry), with its version: the
        # next commit evaluates against it without reading the hash first (one round trip
        # saved); the script's version check catches any other writer, and we re-read then
        self._state: dict[tuple[str, str | None], StoredState] = {}

    async def _previous(
        self, snap: FlowGex, expiry: str | None, last_ms: int | None
    ) -> FlowGex | None:
        if last_ms is None or not self.engine.needs_prev(snap.symbol):
            return None
        cached = self._prev.get((snap.symbol, expiry), last_ms)
        if cached is not None:
            return cached
        if self._columns_only:
            return await store.latest_columns(self.redis, snap.symbol, expiry)
        return await store.latest(self.redis, snap.symbol, expiry)

    async def commit(self, snap: FlowGex, expiry: str | None) -> CommitResult:
        started = time.perf_counter()
        bound = log.bind(symbol=snap.symbol, expiry=expiry)
        skey = store.state_key(snap.symbol, expiry)
        stream = (snap.symbol, expiry)
        for attempt in range(1, self.max_attempts + 1):
            state = self._state.pop(stream, None)
            if state is None:
                state = decode_state(self.engine, hash_fields(await self.redis.hgetall(skey)))
            if state.last_ms is not None and snap.as_of_ms <= state.last_ms:
                self._state[stream] = state
                return CommitResult(False, [])
            prev = await self._previous(snap, expiry, state.last_ms)
            outcome = self.engine.evaluate(state.slots, snap, prev, expiry)
            keys, args = build_args(
                self.engine, snap, expiry, state.version, outcome, self.redis_cfg
            )
            reply = await self._batcher.call(keys, args)
            status = reply[0].decode() if isinstance(reply[0], bytes) else str(reply[0])
            if status == "repeat":
                return CommitResult(False, [])
            if status == "conflict":
                bound.info("commit_conflict", attempt=attempt)
                continue
            self._remember(snap, expiry)
            version = reply[1].decode() if isinstance(reply[1], bytes) else str(reply[1])
            self._state[stream] = StoredState(
                version, snap.as_of_ms, {**state.slots, **outcome.slots}
            )
            metrics.SNAPSHOTS.inc()
            metrics.COMMIT_LATENCY.observe(time.perf_counter() - started)
            enqueued = {x.decode() if isinstance(x, bytes) else str(x) for x in reply[2]}
            emitted = [em for em in outcome.emitted if em.event.id in enqueued]
            for em in outcome.emitted:
                if em.event.id not in enqueued:  # the dedup key says it was enqueued before
                    bound.warning(
                        "alert_already_enqueued", rule=em.event.rule, alert_id=em.event.id
                    )
            events = [em.event for em in emitted]
            for em in emitted:
                metrics.ALERTS_FIRED.labels(em.event.rule).inc()
                bound.info(
                    "alert_fired",
                    rule=em.event.rule,
                    alert_id=em.event.id,
                    summary=em.event.summary,
                )
            for sup in outcome.suppressed:
                bound.info(
                    "alert_suppressed",
                    rule=sup.event.rule,
                    alert_id=sup.event.id,
                    reason=sup.reason,
                )
            return CommitResult(True, events, len(outcome.suppressed))
        raise CommitConflict(
            f"{snap.symbol}: rule state changed under {self.max_attempts} commit attempts in a row"
        )

    async def drain(self) -> None:
        """Wait for the commits already handed to Redis (shutdown)."""
        await self._batcher.drain()

    def _remember(self, snap: FlowGex, expiry: str | None) -> None:
        if self.engine.needs_prev(snap.symbol):
            self._prev.put((snap.symbol, expiry), snap, compact=self._columns_only)


class PrevCache:
    """The previous snapshot per stream, small enough to keep for every watched target.

    A decoded 200-strike snapshot is ~100 KB of rows and matrix (5,000 symbols: 500 MB); the
    rules read a previous snapshot only through its column view (5 x n floats), which is
    kept byte-shuffled and zstd-compressed (~1-2 KB) and rebuilt on use, in a few
    microseconds against a read from Redis. Rule sets with a type that reads rows keep whole
    snapshots, a few of them. Entries are valid only for the `as_of` they were taken at.
    """

    def __init__(self, max_compact: int = PREV_CACHE_MAX, max_full: int = PREV_FULL_MAX) -> None:
        self.max_compact = max_compact
        self.max_full = max_full
        self._entries: dict[tuple[str, str | None], tuple[FlowGex, int, bytes | None]] = {}

    def put(self, key: tuple[str, str | None], snap: FlowGex, *, compact: bool) -> None:
        self._entries.pop(key, None)
        limit = self.max_compact if compact else self.max_full
        if limit <= 0:
            return
        while len(self._entries) >= limit:
            del self._entries[next(iter(self._entries))]  # the oldest insertion goes first
        if not compact:
            self._entries[key] = (snap, snap.as_of_ms, None)
            return
        m = np.ascontiguousarray(columns(snap).m, dtype=np.float64)
        shuffled = m.reshape(-1).view(np.uint8).reshape(-1, 8).T.tobytes()
        bare = msgspec.structs.replace(snap, strikes=[])
        self._entries[key] = (bare, m.shape[1], _prev_cctx.compress(shuffled))

    def get(self, key: tuple[str, str | None], as_of_ms: int) -> FlowGex | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        snap, n, blob = entry
        if blob is None:
            return snap if snap.as_of_ms == as_of_ms else None
        if snap.as_of_ms != as_of_ms:
            return None
        raw = np.frombuffer(_prev_dctx.decompress(blob), np.uint8)
        m = raw.reshape(8, -1).T.copy().view(np.float64).reshape(len(FIELDS), n)
        # a fresh object each time, so the rebuilt view is not kept in the cache
        out = msgspec.structs.replace(snap, strikes=[])
        attach(out, StrikeColumns(m))
        return out

    def __len__(self) -> int:
        return len(self._entries)
