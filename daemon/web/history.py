"""What the live page shows, read from the stored streams: pure functions from stream entries
to JSON-ready dicts (the heatmap frame of a day, one snapshot's profile), and the Redis reads
behind the JSON endpoints.

The strike blocks are decoded column-wise (`codec.decode_arrays_many`), never into row
objects. Levels come from the entry's `call_wall` / `put_wall` fields when the writer stored
them, else from `rules.levels.compute_levels` on the decoded columns: one definition of a wall.

The heatmap's net GEX travels quantized: integers in units of `scale` dollars (1/32767 of the
frame's largest |net GEX|), `MISSING` for a null: a colour needs four digits, and a full day
(1,560 x 200) as float text would be several MB. The profile of a single snapshot (the latest,
and each live one) carries the exact served floats. Never writes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from gex_alertd import keys, store
from gex_alertd.codec import BlockError, decode_arrays, decode_arrays_many
from gex_alertd.connections import Fields, entries
from gex_alertd.model import decode_alert, iso_utc
from gex_alertd.outcomes import records
from gex_alertd.redis_errors import is_wrongtype
from gex_alertd.rules.columns import FIELDS, Arrays, from_block
from gex_alertd.rules.levels import compute_levels, distance_pct, regime_of
from gex_alertd.settled import decode_cached

NAMES = ("strike", "call_gex", "put_gex", "net_gex")  # what the page draws
# an entry stored before the wall fields existed: the rules' view too, for rules.levels
LEVEL_NAMES = (*FIELDS, "net_gex")
MISSING = -32768
QUANT = 32767
MAX_SNAPSHOTS = 4000  # per response: a day at a 6 s interval; more is cut to the newest
MAX_ALERTS = 500  # per response
ALERT_SCAN = 20_000  # outbox entries looked at for one symbol's alerts
FAILING_SCAN = 20_000  # outbox entries looked at for the index's health, over all symbols
FAILING_SCAN_MIN = 200  # ... and at least this many of each symbol's
COLUMN_NAMES = ("strikes", "call_gex", "put_gex", "net_gex")  # a profile's per-strike lists
NY = ZoneInfo("America/New_York")


class BadQuery(ValueError):
    """A query parameter out of its bounds; the message names the parameter."""


def _float(fields: Mapping[bytes, bytes], key: bytes) -> float | None:
    raw = fields.get(key, b"")
    try:
        return float(raw) if raw else None
    except ValueError:
        return None


def _text(fields: Mapping[bytes, bytes], key: bytes) -> str | None:
    raw = fields.get(key, b"")
    return raw.decode(errors="replace") if raw else None


def _stored_walls(fields: Mapping[bytes, bytes]) -> bool:
    return store.F_CALL_WALL in fields or store.F_PUT_WALL in fields


def _levels(fields: Mapping[bytes, bytes], block: Arrays, spot: float) -> tuple[Any, Any]:
    """(call wall, put wall): the stored fields when the entry has them, else computed
    (`block` then holds LEVEL_NAMES)."""
    if _stored_walls(fields):
        return _float(fields, store.F_CALL_WALL), _float(fields, store.F_PUT_WALL)
    lv = compute_levels(from_block(block), spot)
    return lv.call_wall, lv.put_wall


def scalars(fields: Mapping[bytes, bytes]) -> dict[str, Any]:
    """The entry's plain-text scalars plus regime and flip distance (by rules.levels)."""
    spot = _float(fields, store.F_SPOT)
    flip = _float(fields, store.F_FLIP)
    return {
        "symbol": _text(fields, store.F_SYMBOL),
        "expiry": _text(fields, store.F_EXPIRY),
        "as_of": _text(fields, store.F_AS_OF),
        "spot": spot,
        "net": _float(fields, store.F_NET),
        "flip": flip,
        "flip_status": _text(fields, store.F_FLIP_STATUS),
        "regime": regime_of(_text(fields, store.F_LABEL)),
        "flip_distance_pct": distance_pct(spot, flip),
    }


def profile(entry_id: bytes | str, fields: Mapping[bytes, bytes]) -> dict[str, Any]:
    """One snapshot for the page: scalars, levels and its exact strike columns (NaN -> null)."""
    out = scalars(fields)
    out["t"] = _ms(entry_id)
    try:
        names = NAMES if _stored_walls(fields) else LEVEL_NAMES
        block = decode_arrays(fields[store.F_STRIKES], names)
    except (KeyError, ValueError, BlockError):
        block = None
    if block is None or out["spot"] is None:
        out.update(call_wall=None, put_wall=None, strikes=[], call_gex=[], put_gex=[], net_gex=[])
        return out
    out["call_wall"], out["put_wall"] = _levels(fields, block, out["spot"])
    for name in ("strike", "call_gex", "put_gex", "net_gex"):
        out["strikes" if name == "strike" else name] = block.cols[name].tolist()
    return out


def _ms(entry_id: bytes | str) -> int:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(text.split("-", 1)[0])


def heat_frame(batch: Sequence[tuple[bytes, Fields]], window_pct: float) -> dict[str, Any]:
    """The heatmap of a run of entries (oldest first): the strike grid within `window_pct` of
    the spots seen, one column per decodable entry (an undecodable one is skipped and
    counted), levels and scalars as parallel lists, and the newest entry's exact profile."""
    blocks = _decode(batch)
    kept: list[tuple[bytes, Fields, Arrays, float]] = []
    for (eid, fields), block in zip(batch, blocks, strict=True):
        spot = _float(fields, store.F_SPOT)
        if isinstance(block, Arrays) and spot:
            kept.append((eid, fields, block, spot))
    frame: dict[str, Any] = {"skipped": len(batch) - len(kept), "missing": MISSING}
    series: dict[str, list[Any]] = {
        k: [] for k in ("t", "spot", "flip", "net", "call_wall", "put_wall")
    }
    for eid, fields, block, spot in kept:
        cw, pw = _levels(fields, block, spot)
        series["t"].append(_ms(eid))
        series["spot"].append(spot)
        series["flip"].append(_float(fields, store.F_FLIP))
        series["net"].append(_float(fields, store.F_NET))
        series["call_wall"].append(cw)
        series["put_wall"].append(pw)
    frame.update(series)
    grid = _grid([b for _, _, b, _ in kept], series["spot"], window_pct)
    frame["strikes"] = grid.tolist()
    frame["scale"], frame["net_q"] = _quantized([b for _, _, b, _ in kept], grid)
    frame["latest"] = profile(kept[-1][0], kept[-1][1]) if kept else None
    return frame


def _decode(batch: Sequence[tuple[bytes, Fields]]) -> list[Arrays | BlockError]:
    """The blocks of a run of entries: the drawn columns only, and the rules' view as well
    for the (older) entries without stored walls. Decoding the five OI columns of every entry
    took most of a day's serving time."""
    blobs = [f.get(store.F_STRIKES, b"") for _, f in batch]
    out = decode_arrays_many(blobs, NAMES)
    older = [i for i, (_, f) in enumerate(batch) if not _stored_walls(f)]
    if older:
        for i, block in zip(
            older, decode_arrays_many([blobs[i] for i in older], LEVEL_NAMES), strict=True
        ):
            out[i] = block
    return out


def _grid(blocks: Sequence[Arrays], spots: Sequence[float], window_pct: float) -> np.ndarray:
    if not blocks:
        return np.empty(0)
    first = blocks[0].cols["strike"]
    same = all(b.cols["strike"] is first or np.array_equal(b.cols["strike"], first) for b in blocks)
    strikes = first if same else np.unique(np.concatenate([b.cols["strike"] for b in blocks]))
    strikes = strikes[np.isfinite(strikes)]
    lo = min(spots) * (1 - window_pct / 100.0)
    hi = max(spots) * (1 + window_pct / 100.0)
    return np.unique(strikes[(strikes >= lo) & (strikes <= hi)])


def _quantized(blocks: Sequence[Arrays], grid: np.ndarray) -> tuple[float, list[int]]:
    """(scale, row-major time x strike ints): net GEX / scale rounded, MISSING for null."""
    net = np.full((len(blocks), grid.size), np.nan)
    for i, b in enumerate(blocks):
        strikes = b.cols["strike"]
        pos = np.searchsorted(grid, strikes)
        ok = (pos < grid.size) & (grid[np.minimum(pos, grid.size - 1)] == strikes)
        net[i, pos[ok]] = b.cols["net_gex"][ok]
    finite = np.isfinite(net)
    top = float(np.abs(net[finite]).max()) if finite.any() else 0.0
    scale = top / QUANT if top > 0 else 1.0
    q = np.where(finite, np.rint(np.where(finite, net, 0.0) / scale), MISSING)
    return scale, q.astype(np.int64).ravel().tolist()


# --- Redis reads ---------------------------------------------------------------------------


async def read_entries(
    redis: aioredis.Redis, key: str, from_ms: int | None, to_ms: int | None
) -> tuple[list[tuple[bytes, Fields]], bool]:
    """(entries oldest first, whether older ones in the range were cut): the newest
    MAX_SNAPSHOTS in [from_ms, to_ms]."""
    hi = "+" if to_ms is None else f"{to_ms}-18446744073709551615"
    lo = "-" if from_ms is None else f"{from_ms}-0"
    batch = entries(await redis.xrevrange(key, max=hi, min=lo, count=MAX_SNAPSHOTS + 1))
    cut = len(batch) > MAX_SNAPSHOTS
    return list(reversed(batch[:MAX_SNAPSHOTS])), cut


async def read_alerts(
    redis: aioredis.Redis, symbol: str, expiry: str | None, from_ms: int | None, to_ms: int | None
) -> list[dict[str, Any]]:
    """The symbol's alerts (newest MAX_ALERTS, oldest first) among the newest ALERT_SCAN
    entries of its outbox in the range; `t` is the snapshot's as_of in ms (where the page
    marks it)."""
    hi = "+" if to_ms is None else str(to_ms)
    lo = "-" if from_ms is None else str(from_ms)
    outbox = keys.outbox(symbol)
    batch = entries(await redis.xrevrange(outbox, max=hi, min=lo, count=ALERT_SCAN))
    out: list[dict[str, Any]] = []
    for _eid, fields in batch:
        item = alert_item(fields)
        if item is not None and item["expiry"] == expiry:
            out.append(item)
            if len(out) >= MAX_ALERTS:
                break
    await _attach_outcomes(redis, symbol, out)
    return list(reversed(out))


async def _attach_outcomes(redis: aioredis.Redis, symbol: str, items: list[dict[str, Any]]) -> None:
    """The stored outcome of each alert that has one, as one line for its marker."""
    if not items:
        return
    raw = await redis.hmget(keys.outcomes(symbol), [item["id"] for item in items])
    for item, value in zip(items, raw, strict=True):
        line = records.marker_line(value) if isinstance(value, bytes) else None
        if line:
            item["outcome"] = line


def alert_item(fields: Mapping[bytes, bytes]) -> dict[str, Any] | None:
    """What the page shows of an outbox entry; None for one that does not decode."""
    try:
        event = decode_alert(fields[b"event"])
        t = datetime.fromisoformat(event.as_of.replace("Z", "+00:00"))
    except (KeyError, ValueError):
        return None
    return {
        "id": event.id,
        "rule": event.rule,
        "type": event.type,
        "symbol": event.symbol,
        "expiry": event.expiry,
        "severity": event.severity,
        "status": event.status,
        "as_of": event.as_of,
        "t": int(t.timestamp() * 1000),
        "summary": event.summary,
    }


def trading_day(ms: int) -> date:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).astimezone(NY).date()


async def read_settled(
    redis: aioredis.Redis, symbol: str, day: date, expiry: str | None = None
) -> dict[str, Any] | None:
    """The day's settled profile as the daemon caches it (`keys.settled`, see
    `gex_alertd.settled`), or None when there is none or it cannot be read."""
    try:
        raw = await redis.get(keys.settled(symbol, day.isoformat(), expiry))
    except ResponseError as exc:  # a key of another type (made by hand): none to show
        if not is_wrongtype(exc):
            raise
        return None
    cached = decode_cached(raw) if raw is not None else None
    if cached is None:
        return None
    p = cached.profile
    if not p.strike:
        return None
    net = p.net_gex if len(p.net_gex) == len(p.strike) else [None] * len(p.strike)
    return {
        "t": p.as_of_ms,
        "strikes": p.strike,
        "call_gex": [_finite_or_none(x) for x in p.call_gex],
        "put_gex": [_finite_or_none(x) for x in p.put_gex],
        "net_gex": [_finite_or_none(x) for x in net],
    }


def _finite_or_none(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def now_iso() -> str:
    return iso_utc(datetime.now(UTC))


async def index_rows(
    redis: aioredis.Redis, targets: Sequence[tuple[str, str | None, float]], now_ms: int
) -> list[dict[str, Any]]:
    """One row per watched (symbol, expiry, interval_s): the newest snapshot's scalars and
    levels, and its health: `stale` when the newest as_of is older than three intervals (at
    least a minute), `failing` while the symbol's newest `source_failing` alert is firing."""
    async with redis.pipeline(transaction=False) as pipe:  # one command per key: cluster-safe
        for symbol, expiry, _ in targets:
            pipe.xrevrange(keys.snap(symbol, expiry), count=1)
        tops = _but_wrong_types(await pipe.execute(raise_on_error=False))
    failing = await _failing_symbols(redis, sorted({symbol for symbol, _, _ in targets}))
    rows = []
    for (symbol, expiry, interval_s), top in zip(targets, tops, strict=True):
        batch = entries(top)
        row: dict[str, Any] = {"symbol": symbol, "expiry": expiry, "t": None}
        if batch:
            row.update(profile(batch[0][0], batch[0][1]))
            for name in COLUMN_NAMES:
                row.pop(name)
            row["symbol"], row["expiry"] = symbol, expiry
        stale = row["t"] is None or now_ms - row["t"] > max(3 * interval_s, 60.0) * 1000
        row["health"] = "failing" if symbol in failing else "stale" if stale else "ok"
        rows.append(row)
    return rows


def _but_wrong_types(replies: list[Any]) -> list[Any]:
    """A pipeline's replies with a key of another type (made by hand) read as empty: one such
    key failed the whole index, every symbol's row with it. Any other error is raised."""
    for reply in replies:
        if isinstance(reply, Exception) and not is_wrongtype(reply):
            raise reply
    return [[] if isinstance(reply, Exception) else reply for reply in replies]


async def _failing_symbols(redis: aioredis.Redis, symbols: Sequence[str]) -> set[str]:
    """The symbols whose newest `source_failing` event (among the newest entries of their
    outbox: FAILING_SCAN shared out, at least FAILING_SCAN_MIN each) is firing."""
    if not symbols:
        return set()
    count = max(FAILING_SCAN_MIN, FAILING_SCAN // len(symbols))
    async with redis.pipeline(transaction=False) as pipe:
        for symbol in symbols:
            pipe.xrevrange(keys.outbox(symbol), count=count)
        replies = _but_wrong_types(await pipe.execute(raise_on_error=False))
    failing: set[str] = set()
    for symbol, reply in zip(symbols, replies, strict=True):
        for _eid, fields in entries(reply):  # newest first: the symbol's first one wins
            if b'"source_failing"' not in fields.get(b"event", b""):
                continue
            item = alert_item(fields)
            if item is None or item["type"] != "source_failing":
                continue
            if item["status"] != "resolved":
                failing.add(symbol)
            break
    return failing
