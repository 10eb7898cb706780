"""Silences, as in Alertmanager: "do not deliver alerts matching these fields until then".

A silence has exact-match matchers (`rule`, `symbol`, `severity`, `channel`, `type`; each
optional, at least one set; every set one must equal the alert's), a start, an end and a
comment. They live in one Redis hash (`gex:silences`, field = id, value = the JSON below) so
every daemon sharing the Redis honours them, and they are matched at delivery: a silenced alert
is acknowledged and recorded as silenced, never sent and never lost (see notify/dispatch.py).

Time: a silence starts and ends on the Redis server's clock (`TIME`), never a client's: `add`
and `expire` stamp it with the server's now, the daemon matches against the server's now (its
offset from the local clock is measured at each read), and `prune` deletes silences that ended
more than `RETENTION_S` ago by the server's clock. A client with a skewed clock can therefore
neither end a silence early nor keep one alive. Expired silences stop matching at once and stay
listed (`silence list --all`) until pruned.

Edge cases:
- a silence with no matcher would silence everything: refused, as Alertmanager does;
- matchers compare exactly; `symbol` is upper-cased on creation like the watchlist;
- `starts_at` in the future makes a pending silence (it matches from then on);
- `expire` on an expired silence changes nothing; on an unknown id it is an error;
- an entry that does not decode (written by hand, a newer version) is skipped with a warning,
  never a crash, and is pruned like the others only if it can be read.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

import msgspec
import redis.asyncio as aioredis
import structlog

from gex_alertd import keys, packed
from gex_alertd.connections import as_str, entries, is_cluster
from gex_alertd.model import TOO_DEEP, AlertEvent, decode_alert

if TYPE_CHECKING:
    from redis.typing import EncodableT, FieldT

log = structlog.get_logger(__name__)

KEY = keys.SILENCES
RETENTION_S = 5 * 86400.0  # expired silences stay listed this long (Alertmanager keeps 120 h)
MAX_SILENCES = 1_000  # bounded: a flood of `add` cannot grow the hash (or a re-read) without end
MAX_DURATION_S = 366 * 86400.0
MAX_TEXT = 1000  # comment and created_by
MAX_MATCHER = 200
CACHE_MAX_AGE_S = 10.0  # the delivery check re-reads at least this often (see SilenceStore)

Status = Literal["active", "pending", "expired"]
MATCHER_FIELDS = ("rule", "symbol", "severity", "channel", "type")


class SilenceError(ValueError):
    """A request that cannot be a silence (no matcher, bad duration, unknown id...)."""


class Matchers(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    rule: str | None = None
    symbol: str | None = None
    severity: Literal["info", "warning", "critical"] | None = None
    channel: str | None = None
    type: str | None = None

    def problems(self) -> list[str]:
        out = []
        if all(getattr(self, f) is None for f in MATCHER_FIELDS):
            out.append(
                f"at least one matcher ({', '.join(MATCHER_FIELDS)}): none would silence all"
            )
        for f in MATCHER_FIELDS:
            value = getattr(self, f)
            if value is not None and not (0 < len(value) <= MAX_MATCHER):
                out.append(f"matchers.{f}: 1 to {MAX_MATCHER} characters")
        return out

    def matches(self, event: AlertEvent, channel: str) -> bool:
        return (
            (self.rule is None or self.rule == event.rule)
            and (self.symbol is None or self.symbol == event.symbol)
            and (self.severity is None or self.severity == event.severity)
            and (self.channel is None or self.channel == channel)
            and (self.type is None or self.type == event.type)
        )

    def describe(self) -> str:
        return " ".join(f"{f}={getattr(self, f)}" for f in MATCHER_FIELDS if getattr(self, f))


class Silence(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    matchers: Matchers
    starts_at: datetime
    ends_at: datetime
    comment: str = ""
    created_by: str = ""
    created_at: datetime | None = None

    def status(self, now: datetime) -> Status:
        if now >= self.ends_at:
            return "expired"
        if now < self.starts_at:
            return "pending"
        return "active"


def is_silenced(
    silences: Iterable[Silence], event: AlertEvent, channel: str, now: datetime
) -> Silence | None:
    """The first active silence matching `event` delivered to `channel` at `now`, or None.
    Pure: the caller passes the silences and the (server) time."""
    for s in silences:
        if s.starts_at <= now < s.ends_at and s.matchers.matches(event, channel):
            return s
    return None


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Silence)


def encode(silence: Silence) -> bytes:
    return _encoder.encode(silence)


def decode(raw: bytes | str) -> Silence:
    try:
        return _decoder.decode(raw)
    except RecursionError:  # written by hand, nested ~1,000 deep: unreadable like any other
        raise msgspec.DecodeError(TOO_DEEP) from None


def normalize(matchers: Matchers) -> Matchers:
    if matchers.symbol is not None:
        return msgspec.structs.replace(matchers, symbol=matchers.symbol.strip().upper())
    return matchers


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


class SilenceStore:
    """The silences on Redis. Every read measures the server clock's offset from ours, so
    `now()` (and matching) follows the server, not this host.

    The delivery check reads through a cache: every write here bumps `gex:silences:version`
    after the hash, and a check only re-reads the hash when the version moved (one `TIME` +
    `GET` otherwise), so thousands of silences cost no decode per delivery. An entry written
    by hand (no version bump) is seen within `cache_max_age_s`. The two keys live in two
    slots on a Redis Cluster, and redis-py refuses TIME in a cluster pipeline, so writes and
    full reads are single commands, ordered so a cache can only be older than the version it
    is filed under (then the next check re-reads): writes change the hash before the version,
    reads take the version before the hash. On one node the cache check (GET + TIME) is one
    pipelined round trip, since it runs before every delivery."""

    def __init__(
        self, redis: aioredis.Redis, key: str = KEY, *, cache_max_age_s: float = CACHE_MAX_AGE_S
    ) -> None:
        self.redis = redis
        self.cache_max_age_s = cache_max_age_s
        self.key = key
        self.version_key = keys.SILENCES_VERSION if key == KEY else f"{key}:version"
        self.offset_s = 0.0  # server clock minus local clock, from the last read
        self._cached: list[Silence] | None = None
        self._cached_version: bytes | str | None = None
        self._cached_at = 0.0  # monotonic
        # current()'s check on one node, packed once: GET of the version, then TIME
        self._check = packed.pack("GET", self.version_key) + packed.pack("TIME")

    async def _write(
        self, *, hset: tuple[str, bytes] | None = None, hdel: Sequence[str] = ()
    ) -> None:
        if hset is not None:
            await self.redis.hset(self.key, hset[0], hset[1])
        if hdel:
            await self.redis.hdel(self.key, *hdel)
        await self.redis.incr(self.version_key)

    async def server_now(self) -> datetime:
        sec, usec = await self.redis.time()
        server = sec + usec / 1e6
        self.offset_s = server - time.time()
        return _utc(server)

    def now(self) -> datetime:
        """The server's time as last measured, advanced by the local clock."""
        return _utc(time.time() + self.offset_s)

    async def add(
        self,
        matchers: Matchers,
        duration_s: float,
        *,
        comment: str = "",
        created_by: str = "",
        starts_at: datetime | None = None,
    ) -> Silence:
        """A new silence from `starts_at` (default: the server's now) for `duration_s`."""
        matchers = normalize(matchers)
        problems = matchers.problems()
        if not (0 < duration_s <= MAX_DURATION_S):
            problems.append(f"duration: more than 0 and at most 366d, got {duration_s:g}s")
        for name, text in (("comment", comment), ("created_by", created_by)):
            if len(text) > MAX_TEXT:
                problems.append(f"{name}: at most {MAX_TEXT} characters")
        if starts_at is not None and starts_at.tzinfo is None:
            # a naive time would be compared with the aware server clock at every delivery
            problems.append("starts_at: give a time zone (e.g. 2026-05-15T13:30:00Z)")
        elif starts_at is not None and starts_at > datetime.max.replace(tzinfo=UTC) - timedelta(
            seconds=MAX_DURATION_S
        ):
            problems.append("starts_at: too far in the future")
        if problems:
            raise SilenceError("; ".join(problems))
        await self.prune()  # cleanup rides on the writes: no duty of its own
        if await self.redis.hlen(self.key) >= MAX_SILENCES:
            raise SilenceError(f"too many silences (at most {MAX_SILENCES}); expire some")
        now = await self.server_now()
        start = starts_at or now
        silence = Silence(
            id=str(uuid.uuid4()),
            matchers=matchers,
            starts_at=start,
            ends_at=start + timedelta(seconds=duration_s),
            comment=comment,
            created_by=created_by,
            created_at=now,
        )
        await self._write(hset=(silence.id, encode(silence)))
        return silence

    async def get(self, silence_id: str) -> Silence | None:
        raw = await self.redis.hget(self.key, silence_id)
        return None if raw is None else decode(raw)

    async def all(self) -> list[Silence]:
        """Every readable silence, ordered by start, read now (the version first: the content
        read after it is at least that new)."""
        version = await self.redis.get(self.version_key)
        raw = await self.redis.hgetall(self.key)
        await self.server_now()
        out = []
        for sid, value in raw.items():
            try:
                out.append(decode(value))
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                log.warning("unreadable silence skipped", id=as_str(sid), error=str(exc))
        out.sort(key=lambda s: (s.starts_at, s.id))
        self._cached, self._cached_version, self._cached_at = out, version, time.monotonic()
        return list(out)

    def _usable(self) -> bool:
        return (
            self._cached is not None and time.monotonic() - self._cached_at < self.cache_max_age_s
        )

    def _served(self, version: Any, time_reply: Any) -> list[Silence] | None:
        """The cached silences when `version` (read just now) is the one they are filed under,
        the server's clock taken from `time_reply`; None when they must be read again."""
        if self._cached is None or version != self._cached_version:
            return None
        sec, usec = map(int, time_reply)
        self.offset_s = sec + usec / 1e6 - time.time()
        return self._cached

    async def current(self) -> list[Silence]:
        """`all()`, from the cache while the version has not moved (and the cache is young)."""
        if self._usable():
            if is_cluster(self.redis):
                version = await self.redis.get(self.version_key)
                found = self._served(version, await self.redis.time())
            else:  # one round trip, packed once: this runs before every delivery
                replies = await packed.exchange(self.redis, self._check, 2)
                for reply in replies:
                    if isinstance(reply, Exception):
                        raise reply
                found = self._served(replies[0], replies[1])
            if found is not None:
                return found
        return await self.all()

    async def active(self) -> tuple[list[Silence], datetime]:
        """The silences that are not expired, and the server's now they were judged at."""
        silences = await self.current()
        now = self.now()
        return [s for s in silences if s.ends_at > now], now

    async def check(self, event: AlertEvent, channel: str) -> Silence | None:
        """The silence that holds `event` for `channel` now (server time), or None: the async
        silence check the dispatcher calls before each delivery."""
        silences, now = await self.active()
        return is_silenced(silences, event, channel, now)

    async def check_many(self, events: Sequence[AlertEvent], channel: str) -> list[Silence | None]:
        """`check` for a batch with one read of the silences: the dispatcher's silence check."""
        silences, now = await self.active()
        return [is_silenced(silences, e, channel, now) for e in events]

    async def check_many_with(
        self, events: Sequence[AlertEvent], channel: str, commands: Sequence[bytes]
    ) -> tuple[list[Silence | None], list[Any]]:
        """`check_many`, with other commands (packed, one node only) in the round trip of its
        version check: the check's GET and TIME go after them, in the same write, so the
        silences matched are exactly as new as `check_many`'s (taken by the caller's last round
        trip before it sends). Returns the matches and the commands' replies in order (an error
        reply raises). A cache that cannot serve (none yet, aged, the version moved) is read
        again after that round trip, as `check_many` reads it."""
        if not commands:
            return await self.check_many(events, channel), []
        replies = await packed.exchange(
            self.redis, b"".join(commands) + self._check, len(commands) + 2
        )
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        usable = self._usable()
        found = self._served(replies[-2], replies[-1]) if usable else None
        silences = found if found is not None else await self.all()
        now = self.now()
        active = [s for s in silences if s.ends_at > now]
        return [is_silenced(active, e, channel, now) for e in events], replies[:-2]

    async def expire(self, silence_id: str) -> Silence:
        """End a silence now (server time). Expiring an expired silence changes nothing."""
        current = await self.get(silence_id)
        if current is None:
            raise SilenceError(f"no silence with id {silence_id!r}")
        now = await self.server_now()
        if current.ends_at <= now:
            return current
        # a pending silence ends before it began: both ends move to now
        ended = msgspec.structs.replace(current, starts_at=min(current.starts_at, now), ends_at=now)
        await self._write(hset=(silence_id, encode(ended)))
        return ended

    async def prune(self) -> list[str]:
        """Delete silences that ended more than RETENTION_S ago by the server's clock."""
        silences = await self.all()
        cutoff = self.now() - timedelta(seconds=RETENTION_S)
        gone = [s.id for s in silences if s.ends_at < cutoff]
        if gone:
            await self._write(hdel=gone)
        return gone


def to_json(silences: Sequence[Silence], now: datetime) -> list[dict[str, Any]]:
    """The API's view: the stored fields plus the status at `now`."""
    return [{**msgspec.to_builtins(s), "status": s.status(now)} for s in silences]


# --- silenced alerts: what delivery held back, for `outbox list` --------------------------

SILENCED_MAXLEN = 10_000  # the record is for operators, not an archive: trimmed (~) to this


class SilencedAlert(msgspec.Struct, frozen=True):
    """One alert a silence kept from one channel (a `gex:silenced` stream entry)."""

    record_id: str
    alert_id: str
    channel: str
    symbol: str
    silence: str
    at: str
    summary: str


def silenced_fields(
    alert_id: str, channel: str, symbol: str, silence: Silence, at: str, event: bytes
) -> dict[FieldT, EncodableT]:
    # typed as XADD's fields (a dict is invariant)
    return {
        "id": alert_id,
        "channel": channel,
        "symbol": symbol,
        "silence": silence.id,
        "matchers": silence.matchers.describe(),
        "at": at,
        "event": event,
    }


async def list_silenced(redis: aioredis.Redis, count: int = 50) -> list[SilencedAlert]:
    """The most recent silenced deliveries, newest first."""
    out = []
    for rid, fields in entries(await redis.xrevrange(keys.SILENCED, count=count)):
        f = {as_str(k): v for k, v in fields.items()}
        try:
            summary = decode_alert(f.get("event", b"")).summary
        except (msgspec.DecodeError, msgspec.ValidationError):
            summary = "(unreadable event)"
        out.append(
            SilencedAlert(
                record_id=as_str(rid),
                alert_id=as_str(f.get("id", b"")),
                channel=as_str(f.get("channel", b"")),
                symbol=as_str(f.get("symbol", b"")),
                silence=as_str(f.get("silence", b"")),
                at=as_str(f.get("at", b"")),
                summary=summary,
            )
        )
    return out
