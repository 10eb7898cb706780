"""Snapshot streams in Redis (contract: design.md "Redis layout").

`gex:{SYM}:snap` (or `gex:{SYM}:snap:<expiry>` for an expiry filter) holds one entry per
snapshot with ID `<as_of ms>-0`, so Redis itself refuses a repeat or an out-of-order `as_of`.
Scalars are plain text for `redis-cli XRANGE`; the strike rows are one compressed block
(`gex_alertd.codec`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from gex_alertd import keys
from gex_alertd.codec import (
    Arrays,
    BlockError,
    decode_arrays,
    decode_arrays_many,
    decode_columns,
    encode_matrix,
    encode_strikes,
)
from gex_alertd.config import RedisConfig
from gex_alertd.connections import entries
from gex_alertd.model import FEEDS, FlowGex, iso_utc, strike_matrix
from gex_alertd.rules.columns import FIELDS, attach, from_block
from gex_alertd.rules.levels import Levels, attach_levels, levels

# Field names in the stream entry; changing them breaks readers of existing data.
F_AS_OF, F_SPOT, F_NET, F_LABEL = b"as_of", b"spot", b"net", b"label"
F_FLIP, F_FLIP_STATUS, F_EXPIRY, F_SYMBOL, F_STRIKES = (
    b"flip", b"flip_status", b"expiry", b"symbol", b"strikes",
)  # fmt: skip
# the walls (rules.levels, no window): derived, stored readable so XRANGE and replay need not
# decode strikes for them; an entry written before they existed has neither
F_CALL_WALL, F_PUT_WALL = b"call_wall", b"put_wall"


class StoredEntryError(ValueError):
    """A stream entry that cannot be decoded (written by something else, or corrupted)."""


def entry_id(snap: FlowGex) -> str:
    return f"{snap.as_of_ms}-0"


def _num(x: float | None) -> bytes:
    return b"" if x is None else repr(float(x)).encode()


def _iso(ts: datetime) -> bytes:
    return _stamps(ts)[0]


# an as_of's two spellings (`as_of` field, feeds stamp): the symbols of a watchlist are served
# the same few as_of at a time, so each is formatted once instead of twice per snapshot
_STAMPS: dict[datetime, tuple[bytes, str]] = {}
_STAMPS_MAX = 256


def _stamps(ts: datetime) -> tuple[bytes, str]:
    # equal datetimes are one instant, which is all both depend on; but for fold: the two
    # instants of a repeated wall-clock hour (a zone leaving DST; fold 0 and 1) compare equal
    # and hash alike, so a fold-1 datetime (only ever made in code: the wire's offsets are
    # fixed) is neither looked up nor kept
    found = None if ts.fold else _STAMPS.get(ts)
    if found is None:
        if len(_STAMPS) >= _STAMPS_MAX:
            _STAMPS.clear()
        utc = (ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)).astimezone(UTC)
        iso = utc.isoformat().replace("+00:00", "Z").encode()
        found = (iso, iso_utc(utc))
        if not ts.fold:
            _STAMPS[ts] = found
    return found


def _pack_feeds(as_of: datetime, feeds: dict[str, str | None]) -> tuple[str, Any]:
    """data_as_of in ~100 bytes less per entry: the usual ten feeds as a bare list of values,
    with 1 for "exactly the snapshot's own as_of" (what most feeds carry). Anything unusual
    (other names, another order) is kept as the mapping it was."""
    if tuple(feeds) != FEEDS:
        return "data_as_of", feeds
    stamp = _stamps(as_of)[1]
    return "feeds", [1 if v == stamp else v for v in feeds.values()]


def _unpack_feeds(extra: dict[str, Any], as_of: datetime) -> dict[str, str | None] | None:
    values = extra.get("feeds")
    if values is None:
        return extra.get("data_as_of")
    stamp = iso_utc(as_of)
    return {name: stamp if v == 1 else v for name, v in zip(FEEDS, values, strict=True)}


def encode_fields(snap: FlowGex) -> dict[bytes, bytes]:
    """The stream entry. A decoded snapshot's block comes from its strike matrix (the live
    path: no second pass over the rows); any other from its rows, to the same bytes."""
    fields, block = scalar_fields(snap)
    if isinstance(block, bytes):
        fields[F_STRIKES] = block
    else:
        fields[F_STRIKES] = encode_matrix(*block)
    return fields


def scalar_fields(
    snap: FlowGex, *, walls: bool = True
) -> tuple[dict[bytes, bytes], bytes | tuple[np.ndarray, dict[str, Any]]]:
    """The stream entry but its strike block (`F_STRIKES`, which goes last), and that block:
    for a decoded snapshot its strike matrix and extra, for `codec.encode_matrices` to encode
    with others (the commit batch: `encode_fields` gives the same entry); for any other
    snapshot the block itself, from its rows. `walls=False` leaves the two wall fields out, for
    a caller that works them out for many snapshots at once (`wall_fields` gives them; they
    go right after `F_FLIP_STATUS`)."""
    extra: dict[str, Any] = {}
    if snap.endpoint_version is not None:
        extra["endpoint_version"] = snap.endpoint_version
    if snap.data_as_of is not None:
        name, packed = _pack_feeds(snap.as_of, snap.data_as_of)
        extra[name] = packed
    m = strike_matrix(snap)
    fields = {
        F_AS_OF: _iso(snap.as_of),
        F_SPOT: _num(snap.underlying_price),
        F_NET: _num(snap.live_net_gex),
        F_LABEL: (snap.live_net_gex_label or "").encode(),
        F_FLIP: _num(snap.live_gamma_flip),
        F_FLIP_STATUS: (snap.gamma_flip_status or "").encode(),
    }
    if walls:  # at WALLS_AT
        fields.update(wall_fields(levels(snap)))
    fields[F_EXPIRY] = (snap.expiry or "").encode()
    fields[F_SYMBOL] = snap.symbol.encode()
    return fields, (encode_strikes(snap.strikes, extra) if m is None else (m, extra))


WALLS_AT = 6  # fields before the two walls in an entry (`scalar_fields`)


def wall_fields(walls: Levels) -> dict[bytes, bytes]:
    """The entry's two wall fields (`scalar_fields`)."""
    return {F_CALL_WALL: _num(walls.call_wall), F_PUT_WALL: _num(walls.put_wall)}


def _opt_str(fields: Mapping[bytes, bytes], key: bytes) -> str | None:
    v = fields.get(key, b"")
    return v.decode() if v else None


def _opt_num(fields: Mapping[bytes, bytes], key: bytes) -> float | None:
    v = fields.get(key, b"")
    return float(v) if v else None


def _snapshot(fields: Mapping[bytes, bytes], rows: list[Any], extra: dict[str, Any]) -> FlowGex:
    as_of = datetime.fromisoformat(fields[F_AS_OF].decode())
    snap = FlowGex(
        symbol=fields[F_SYMBOL].decode(),
        as_of=as_of,
        underlying_price=float(fields[F_SPOT]),
        live_net_gex=float(fields[F_NET]),
        live_net_gex_label=_opt_str(fields, F_LABEL),
        live_gamma_flip=_opt_num(fields, F_FLIP),
        gamma_flip_status=_opt_str(fields, F_FLIP_STATUS),
        expiry=_opt_str(fields, F_EXPIRY),
        strikes=rows,
        endpoint_version=extra.get("endpoint_version"),
        data_as_of=_unpack_feeds(extra, as_of),
    )
    if F_CALL_WALL in fields and F_PUT_WALL in fields:
        attach_levels(snap, Levels(_opt_num(fields, F_CALL_WALL), _opt_num(fields, F_PUT_WALL)))
    return snap


def decode_fields(fields: Mapping[bytes, bytes], *, strikes: bool = True) -> FlowGex:
    """Rebuild the snapshot exactly; `strikes=False` skips the block for scalar-only readers."""
    try:
        rows: list[Any] = []
        extra: dict[str, Any] = {}
        if strikes:
            block = decode_columns(fields[F_STRIKES])
            rows, extra = block.rows(), block.extra
        return _snapshot(fields, rows, extra)
    except (KeyError, ValueError, BlockError) as exc:
        raise StoredEntryError(f"undecodable snapshot entry: {exc!r}") from None


def decode_fields_columns(
    fields: Mapping[bytes, bytes], names: Iterable[str]
) -> tuple[FlowGex, Arrays]:
    """The snapshot without its rows (`strikes == []`; everything else exact, the block's
    extras included) and the named strike columns as arrays, decoded straight from the block:
    for readers that look at strike data only column-wise (replay with column-only rules)."""
    try:
        block = decode_arrays(fields[F_STRIKES], names)
        return _snapshot(fields, [], block.extra), block
    except (KeyError, ValueError, BlockError) as exc:
        raise StoredEntryError(f"undecodable snapshot entry: {exc!r}") from None


def decode_fields_columns_many(
    entries: Sequence[Mapping[bytes, bytes]], names: Iterable[str]
) -> list[tuple[FlowGex, Arrays] | StoredEntryError]:
    """`decode_fields_columns` for a page of entries (a StoredEntryError in place of a bad
    one), the strike blocks decoded together (`codec.decode_arrays_many`)."""
    out: list[tuple[FlowGex, Arrays] | StoredEntryError] = []
    blobs = [fields.get(F_STRIKES, b"") for fields in entries]
    for fields, block in zip(entries, decode_arrays_many(blobs, names), strict=True):
        try:
            if isinstance(block, BlockError) or F_STRIKES not in fields:
                raise block if isinstance(block, BlockError) else KeyError(F_STRIKES)
            out.append((_snapshot(fields, [], block.extra), block))
        except (KeyError, ValueError, BlockError) as exc:
            out.append(StoredEntryError(f"undecodable snapshot entry: {exc!r}"))
    return out


def trim_spec(cfg: RedisConfig) -> list[str]:
    """How commit.lua trims: `["MAXLEN", n]`, `["MINID", retention ms]` (the script takes the
    cut from Redis's own clock: `TIME` minus the retention) or `[]`. Never from a snapshot's
    as_of: one body dated 2099 cut a stream of 300 snapshots down to itself."""
    if cfg.max_len is not None:
        return ["MAXLEN", str(cfg.max_len)]
    if cfg.retention:
        return ["MINID", str(int(cfg.retention * 1000))]
    return []


def max_age_s(cfg: RedisConfig) -> float | None:
    """The oldest as_of worth storing: the retention when streams are trimmed by time."""
    return None if cfg.max_len is not None or not cfg.retention else float(cfg.retention)


def trim_args(cfg: RedisConfig, server_ms: int) -> list[str | int]:
    """XADD trimming arguments: length-based when max_len is set, else time-based retention
    counted back from `server_ms`, Redis's clock (`TIME`)."""
    if cfg.max_len is not None:
        return ["MAXLEN", "~", cfg.max_len]
    if cfg.retention:
        return ["MINID", "~", max(0, server_ms - int(cfg.retention * 1000))]
    return []


async def server_ms(redis: aioredis.Redis) -> int:
    seconds, micros = await redis.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def write_snapshot(
    redis: aioredis.Redis, snap: FlowGex, expiry: str | None, cfg: RedisConfig
) -> bool:
    """Store one snapshot on its own (no rules). False when its as_of is not newer than the top."""
    now = await server_ms(redis) if cfg.max_len is None and cfg.retention else 0
    args: list[Any] = ["XADD", keys.snap(snap.symbol, expiry), *trim_args(cfg, now)]
    args.append(entry_id(snap))
    for k, v in encode_fields(snap).items():
        args += [k, v]
    try:
        await redis.execute_command(*args)
    except ResponseError as exc:
        if "equal or smaller" in str(exc):
            return False
        raise
    return True


def _id_ms(entry: bytes | str) -> int:
    text = entry.decode() if isinstance(entry, bytes) else entry
    return int(text.split("-", 1)[0])


async def read_range(
    redis: aioredis.Redis,
    symbol: str,
    expiry: str | None = None,
    start_ms: int | None = None,
    end_ms: int | None = None,
    *,
    count: int = 1000,
    strikes: bool = True,
) -> AsyncIterator[FlowGex]:
    """Snapshots in as_of order between start_ms and end_ms (inclusive), paged."""
    key = keys.snap(symbol, expiry)
    lo = "-" if start_ms is None else f"{start_ms}-0"
    hi = "+" if end_ms is None else f"{end_ms}-18446744073709551615"
    while True:
        batch = entries(await redis.xrange(key, min=lo, max=hi, count=count))
        for _id, fields in batch:
            yield decode_fields(fields, strikes=strikes)
        if len(batch) < count:
            return
        lo = "(" + batch[-1][0].decode()


async def latest(redis: aioredis.Redis, symbol: str, expiry: str | None = None) -> FlowGex | None:
    batch = entries(await redis.xrevrange(keys.snap(symbol, expiry), count=1))
    return decode_fields(batch[0][1]) if batch else None


async def latest_columns(
    redis: aioredis.Redis, symbol: str, expiry: str | None = None
) -> FlowGex | None:
    """The stream's top snapshot as `rules.columns.detached` gives it: no rows, its column
    view decoded straight from the block (5 columns as arrays, no row objects). The previous
    snapshot for rules that read strike data only through `rules.columns`, at a fraction of
    `latest`'s cost."""
    batch = entries(await redis.xrevrange(keys.snap(symbol, expiry), count=1))
    if not batch:
        return None
    bare, block = decode_fields_columns(batch[0][1], FIELDS)
    attach(bare, from_block(block))
    return bare


async def stream_symbols(redis: aioredis.Redis) -> list[tuple[str, str | None]]:
    """Every (symbol, expiry) with a snapshot stream, from a SCAN of the key space."""
    out = []
    async for key in redis.scan_iter(match=keys.SNAP_PATTERN, count=1000, _type="stream"):
        text = key.decode()
        sym = text[text.index("{") + 1 : text.index("}")]
        rest = text[text.index("}") + 1 :]
        expiry = rest[len(":snap:") :] if rest.startswith(":snap:") else None
        out.append((sym, expiry))
    return sorted(out, key=lambda t: (t[0], t[1] or ""))
