"""The compact strike block: per-strike rows stored column by column, then zstd.

Why columnar: a column of strikes or open interest is a run of similar numbers, and zstd
finds that; row-wise JSON repeats every field name 200 times. Each numeric column picks the
smallest exact representation:
  - `d` decimal: every value is an integer after scaling by 10**k (k <= 6), stored as
    little-endian int64, byte-shuffled so the high bytes (mostly 0x00/0xff) line up for zstd;
  - `f` float64, byte-shuffled (exact for anything);
  - `n` net_gex equals call_gex + put_gex (or call - put) exactly in every row, so it is
    rebuilt, not stored (the row values are the served ones; nothing is re-derived when the
    identity does not hold bit for bit).
Nulls travel as a bitmap. Decoding gives back exactly the floats that were encoded.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

import msgspec
import zstandard

from gex_alertd.model import STRIKE_FIELDS, StrikeRow

BLOCK_VERSION = 1
_MAX_SCALE = 6
_LIMIT = 9.0e18  # below 2**63, so every accepted value fits an int64

_cctx = zstandard.ZstdCompressor(level=9)
_dctx = zstandard.ZstdDecompressor()
_enc = msgspec.msgpack.Encoder()
_dec = msgspec.msgpack.Decoder()


class BlockError(ValueError):
    pass


def _shuffle(buf: bytes, width: int) -> bytes:
    return b"".join(buf[i::width] for i in range(width))


def _unshuffle(buf: bytes, width: int) -> bytes:
    n = len(buf) // width
    out = bytearray(len(buf))
    for i in range(width):
        out[i::width] = buf[i * n : (i + 1) * n]
    return bytes(out)


def _scale_for(values: Sequence[float]) -> int | None:
    """The smallest k such that every value is exactly n / 10**k for an integer n."""
    for k in range(_MAX_SCALE + 1):
        p = 10**k
        ok = True
        for v in values:
            scaled = v * p
            if not -_LIMIT < scaled < _LIMIT:
                ok = False
                break
            n = round(scaled)
            if n / p != v:
                ok = False
                break
        if ok:
            return k
    return None


def _encode_column(values: list[float]) -> list[Any]:
    k = _scale_for(values)
    if k is not None:
        p = 10**k
        raw = struct.pack(f"<{len(values)}q", *[round(v * p) for v in values])
        return ["d", k, _shuffle(raw, 8)]
    return ["f", _shuffle(struct.pack(f"<{len(values)}d", *values), 8)]


def _decode_column(col: list[Any], count: int) -> list[float]:
    kind = col[0]
    if kind == "d":
        k, raw = col[1], col[2]
        ints = struct.unpack(f"<{count}q", _unshuffle(raw, 8))
        if k == 0:
            return list(map(float, ints))
        p = 10**k
        return [n / p for n in ints]
    if kind == "f":
        return list(struct.unpack(f"<{count}d", _unshuffle(col[1], 8)))
    raise BlockError(f"unknown column kind {kind!r}")


def _null_mask(values: list[float | None]) -> bytes | None:
    if all(v is not None for v in values):
        return None
    mask = bytearray((len(values) + 7) // 8)
    for i, v in enumerate(values):
        if v is None:
            mask[i >> 3] |= 1 << (i & 7)
    return bytes(mask)


def encode_strikes(rows: Sequence[StrikeRow], extra: dict[str, Any] | None = None) -> bytes:
    count = len(rows)
    columns: dict[str, Any] = {}
    raw_cols = {f: [getattr(r, f) for r in rows] for f in STRIKE_FIELDS}
    net_rule = _net_identity(raw_cols) if count else None
    for name, values in raw_cols.items():
        if name == "net_gex" and net_rule is not None:
            columns[name] = ["n", net_rule]
            continue
        mask = _null_mask(values)
        present = [v for v in values if v is not None]
        if not present:
            columns[name] = ["z"]  # all null
            continue
        col = _encode_column(present)
        columns[name] = [*col, mask] if mask is not None else col
    payload = {"v": BLOCK_VERSION, "n": count, "c": columns}
    if extra:
        payload["x"] = extra
    return _cctx.compress(_enc.encode(payload))


def _net_identity(cols: dict[str, list[float | None]]) -> str | None:
    calls, puts, nets = cols["call_gex"], cols["put_gex"], cols["net_gex"]
    if any(v is None for v in calls) or any(v is None for v in puts) or any(v is None for v in nets):
        return None
    if all(c + p == n for c, p, n in zip(calls, puts, nets, strict=True)):
        return "sum"
    if all(c - p == n for c, p, n in zip(calls, puts, nets, strict=True)):
        return "diff"
    return None


class Columns(msgspec.Struct, frozen=True):
    """A decoded strike block, column-wise: what the rules want without building 200 rows."""

    count: int
    cols: dict[str, list[float | None]]
    extra: dict[str, Any]

    def rows(self) -> list[StrikeRow]:
        if not self.count:
            return []
        return [StrikeRow(*vals) for vals in zip(*(self.cols[n] for n in STRIKE_FIELDS), strict=True)]


def decode_columns(blob: bytes) -> Columns:
    try:
        payload = _dec.decode(_dctx.decompress(blob))
        version = payload.get("v")
    except (zstandard.ZstdError, msgspec.DecodeError, AttributeError) as exc:
        raise BlockError(f"corrupt strike block: {exc}") from None
    if version != BLOCK_VERSION:
        raise BlockError(f"unsupported strike block version {version!r}")
    count: int = payload["n"]
    cols: dict[str, list[float | None]] = {}
    net_rule: str | None = None
    for name in STRIKE_FIELDS:
        col = payload["c"].get(name, ["z"])
        kind = col[0]
        if kind == "n":
            net_rule = col[1]
            continue
        if kind == "z":
            cols[name] = [None] * count
            continue
        has_mask = len(col) == (4 if kind == "d" else 3)
        if not has_mask:
            cols[name] = _decode_column(col, count)  # type: ignore[assignment]
            continue
        mask = col[-1]
        nulls = [bool(mask[i >> 3] & (1 << (i & 7))) for i in range(count)]
        present = iter(_decode_column(col, count - sum(nulls)))
        cols[name] = [None if isnull else next(present) for isnull in nulls]
    if net_rule is not None:
        calls, puts = cols["call_gex"], cols["put_gex"]
        if net_rule == "sum":
            cols["net_gex"] = [c + p for c, p in zip(calls, puts, strict=True)]  # type: ignore[operator]
        else:
            cols["net_gex"] = [c - p for c, p in zip(calls, puts, strict=True)]  # type: ignore[operator]
    return Columns(count, cols, payload.get("x") or {})


def decode_strikes(blob: bytes) -> tuple[list[StrikeRow], dict[str, Any]]:
    block = decode_columns(blob)
    return block.rows(), block.extra
