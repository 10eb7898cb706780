"""The day's settled profile for the `repositioning` rule: fetched at the edge, cached, attached.

`GET /v1/exposure/gex/{symbol}[?expiration=yyyy-MM-dd]` (same key as Flow GEX) serves the
profile on settled OI, frozen all session. flowgex-api.md does not pin its wire format, so the
daemon reads the minimum that is consistent with Flow GEX: `symbol`, `as_of`,
`underlying_price` and `strikes[]` rows with `strike`, `call_gex`, `put_gex` (the Flow GEX
row fields; others ignored, nullable as there). Headline fields are accepted under either
name, Flow GEX's (`live_net_gex`, `live_net_gex_label`, `live_gamma_flip`, `expiry`) or the
SDK's GexResponse (`net_gex`, `net_gex_label`, `gamma_flip`, `expiration`); the rule never
reads them. The body is bounded in size and time exactly as the flow endpoint's.

Once per (symbol, expiry, exchange day): the first live snapshot of the day that a
repositioning rule applies to looks in Redis (`keys.settled`, written with `SET NX` and a TTL
of the stream retention, so several daemons keep one copy), else fetches. A profile whose
as_of is from another exchange day (the morning settle is not published yet) is not cached:
another try after `retry_s`, as after an upstream error (or a body that is malformed, too
large, too slow, for another symbol, or without strikes: one warning naming the cause, nothing
stored); meanwhile the rule neither fires nor resets. The cached value records the first
snapshot it was attached to (`from_ms`): replay attaches it from that snapshot on, exactly as
the live path did, so both give the same alerts.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import redis.asyncio as aioredis
import structlog
from redis.exceptions import ResponseError

from gex_alertd import keys
from gex_alertd.model import TOO_DEEP, FlowGex, PayloadError, decode_flow_gex
from gex_alertd.redis_errors import is_wrongtype
from gex_alertd.rules.repositioning import Settled, attach_settled, exchange_day, settled_from
from gex_alertd.sources.errors import SourceError

log = structlog.get_logger()

_ALIASES = {
    "net_gex": "live_net_gex",
    "net_gex_label": "live_net_gex_label",
    "gamma_flip": "live_gamma_flip",
    "expiration": "expiry",
}
MIN_TTL_S = 2 * 86400


class CachedSettled(msgspec.Struct, array_like=True, frozen=True):
    from_ms: int  # as_of of the first live snapshot it was attached to
    profile: Settled


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(CachedSettled)
_top_level = msgspec.json.Decoder(dict[str, msgspec.Raw])
_ZERO = msgspec.Raw(b"0.0")

FetchFn = Callable[[str, str | None], Awaitable[bytes]]


def decode_settled(body: bytes, symbol: str) -> FlowGex:
    """Decode and validate a `/v1/exposure/gex` body; PayloadError names the problem."""
    # the top level only, each value kept as its raw JSON (no object built): decoded whole
    # to rename a few fields, 1M tiny rows peaked at 351 MB and held the loop ~2.7 s before
    # decode_flow_gex's strike bound could refuse them
    try:
        tree = _top_level.decode(body)
    except RecursionError:
        raise PayloadError(f"malformed settled GEX payload: {TOO_DEEP}") from None
    except msgspec.ValidationError:
        raise PayloadError("malformed settled GEX payload: expected a JSON object") from None
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise PayloadError(f"malformed settled GEX payload: {exc}") from None
    for sdk, flow in _ALIASES.items():
        if flow not in tree and sdk in tree:
            tree[flow] = tree.pop(sdk)
    tree.setdefault("live_net_gex", _ZERO)  # optional here: the rule reads the rows only
    try:
        return decode_flow_gex(msgspec.json.encode(tree), symbol=symbol)
    except PayloadError as exc:
        raise PayloadError(str(exc).replace("Flow GEX", "settled GEX")) from None


def encode_cached(cached: CachedSettled) -> bytes:
    return _encoder.encode(cached)


def decode_cached(raw: bytes | str) -> CachedSettled | None:
    if isinstance(raw, str):  # a client with decode_responses: not ours to read
        return None
    try:
        return _decoder.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None  # another layout: fetched again, like a missing one


class SettledProfiles:
    """Per daemon: the current day's profile per (symbol, expiry), from Redis or upstream
    (`fetch`; None for replay, which reads what the live path stored and never fetches)."""

    def __init__(
        self,
        redis: aioredis.Redis,
        fetch: FetchFn | None,
        *,
        ttl_s: float = MIN_TTL_S,
        retry_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.redis = redis
        self.fetch = fetch
        self.ttl_s = max(int(ttl_s), MIN_TTL_S)
        self.retry_s = retry_s
        self.clock = clock
        # one day per target (bounded); None: known missing (only without `fetch`: replay)
        self._mem: dict[tuple[str, str | None], tuple[str, CachedSettled | None]] = {}
        # per target, the Redis key (one day) and when it may be fetched again: one entry per
        # target, so a day whose profile never came is not remembered forever
        self._next_try: dict[tuple[str, str | None], tuple[str, float]] = {}
        # per target, the cache key of another type last said so (one line, not one per poll)
        self._wrong_type: dict[tuple[str, str | None], str] = {}

    async def attach(self, snap: FlowGex, expiry: str | None) -> None:
        """Attach today's settled profile to `snap` when there is one (else nothing)."""
        day = exchange_day(snap)
        found = await self._get(snap, expiry, day)
        if found is not None and snap.as_of_ms >= found.from_ms:
            attach_settled(snap, found.profile)

    async def _get(self, snap: FlowGex, expiry: str | None, day: str) -> CachedSettled | None:
        symbol = snap.symbol.upper()
        hit = self._mem.get((symbol, expiry))
        if hit is not None and hit[0] == day:
            return hit[1]
        key = keys.settled(symbol, day, expiry)
        found = await self._stored(key, target=(symbol, expiry))
        if found is None:
            found = await self._fetch(symbol, expiry, day, key, snap.as_of_ms)
        if found is not None or self.fetch is None:
            self._mem[(symbol, expiry)] = (day, found)
        return found

    async def _stored(
        self, key: str, target: tuple[str, str | None] | None = None
    ) -> CachedSettled | None:
        """The cached profile at `key`, None when there is none. A key of another type (made
        by hand) is none, with one error line per target and key: raised, it was a snapshot
        that can never commit, and every one of the symbol was set aside to gex:dead all day.
        The profile fetched then is kept in this process's memory for the day; the key is
        left alone."""
        try:
            raw = await self.redis.get(key)
        except ResponseError as exc:
            if not is_wrongtype(exc):
                raise
            if target is not None and self._wrong_type.get(target) != key:
                self._wrong_type[target] = key
                log.error(
                    "settled profile cache key holds another type; not cached there",
                    key=key,
                )
            return None
        return decode_cached(raw) if raw is not None else None

    async def _fetch(
        self, symbol: str, expiry: str | None, day: str, key: str, as_of_ms: int
    ) -> CachedSettled | None:
        now = self.clock()
        waiting = self._next_try.get((symbol, expiry))
        if self.fetch is None or (waiting is not None and waiting[0] == key and now < waiting[1]):
            return None
        self._next_try[(symbol, expiry)] = (key, now + self.retry_s)
        bound: Any = log.bind(symbol=symbol, expiry=expiry)
        try:
            settled = decode_settled(await self.fetch(symbol, expiry), symbol)
        except (SourceError, PayloadError) as exc:
            bound.warning("settled profile unavailable", error=str(exc), retry_in=self.retry_s)
            return None
        profile = settled_from(settled)
        if not profile.strike:
            # valid JSON, but nothing to compare: cached, it would silence the rule all day
            bound.warning("settled profile unavailable", error="no strikes", retry_in=self.retry_s)
            return None
        if profile.day != day:
            bound.info("settled profile not published for today yet", served_day=profile.day)
            return None
        self._next_try.pop((symbol, expiry), None)
        fresh = CachedSettled(as_of_ms, profile)
        # NX: of several daemons the first one's copy (and from_ms) wins; all use it
        if not await self.redis.set(key, encode_cached(fresh), nx=True, ex=self.ttl_s):
            fresh = await self._stored(key) or fresh
        bound.info("settled profile cached", day=day, strikes=len(profile.strike))
        return fresh
