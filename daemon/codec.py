"""The compact strike block: per-strike rows stored column by column, then zstd.

Why columnar: a column of strikes or open interest is a run of similar numbers, and zstd
finds that; row-wise JSON repeats every field name 200 times. Each numeric column picks the
smallest exact representation:
  - `d` decimal: every value is an integer after scaling by 10**k (k <= 6), stored as
    little-endian int64, byte-shuffled so the high bytes (mostly 0x00/0xff) line up for zstd;
  - `D` the same as deltas, for the strike grid (equal steps compress to almost nothing);
  - `f` float64, byte-shuffled (exact for anything);
  - `n` net_gex equals call_gex + put_gex (or call - put) exactly in every row, so it is
    rebuilt, not stored (the row values are the served ones; nothing is re-derived when the
    identity does not hold bit for bit).
Nulls travel as a bitmap. Decoding gives back exactly the floats that were encoded.

Two ways in, one format: `encode_matrix` from a decoded snapshot's strike matrix (the live
path, `model.strike_matrix`: no pass over the rows) and `encode_strikes` from any rows; the
tests pin both to the same bytes, and those bytes to what was stored before the matrix path.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec
import numpy as np
import zstandard

from gex_alertd.model import STRIKE_FIELDS, StrikeRow, rows_matrix
from gex_alertd.rules.columns import Arrays

BLOCK_VERSION = 1
_MAX_SCALE = 6
_LIMIT = float(2**53)

ZSTD_LEVEL = 3
# zstd's hash and chain tables at 2**12 entries each (16 KB each) instead of level 3's 2**15
# and 2**14 for a 200-strike payload (128 and 64 KB): in the daemon, between two batches, the
# decode of 16 bodies pushes the larger tables out of the CPU's caches, and each block paid for
# it (zstd 13 us a block in a hot loop, 18 in the daemon). Everything else is level 3's, for
# the payload's size; the blocks come out ~0.05% larger (5,006 -> 5,009 B on bench_storage's
# late-session blocks), and decoding does not depend on it
ZSTD_TABLE_LOG = 12
# per thread: python-zstandard runs a context without the GIL, and one context used by two
# threads at once fails or returns wrong bytes (the live page decodes history in a worker
# thread while the loop decodes too); also `_compress`'s payload buffer
_local = threading.local()
# what a thread keeps after a block (a payload of ~6,000 strikes): a larger one (a body of many
# rows, up to source.max_body_bytes) gets a buffer and a compressor used once and let go, not
# held for good (msgspec truncates a buffer without giving its memory back)
_KEPT_MAX = 512 * 1024
_enc = msgspec.msgpack.Encoder()
_dec = msgspec.msgpack.Decoder()


class BlockError(ValueError):
    pass


def shuffle(arr: np.ndarray) -> bytes:
    """Byte-transpose 8-byte lanes so byte 0 of every value comes first, then byte 1, ...
    (of a C-contiguous array: its values in memory order)."""
    return (
        arr.astype("<u8" if arr.dtype.kind == "i" else "<f8", copy=False)
        .view(np.uint8)
        .reshape(-1, 8)
        .T.tobytes()
    )


def unshuffle(buf: bytes, count: int, dtype: str) -> np.ndarray:
    """`shuffle`'s inverse: `count` values of `dtype` (8 bytes each), flat."""
    return np.frombuffer(buf, np.uint8).reshape(8, count).T.copy().view(dtype).reshape(count)


def _as_scaled_ints(a: np.ndarray) -> tuple[int, np.ndarray] | None:
    """(k, ints) with every value exactly ints[i] / 10**k, or None when no small k works.

    |ints| < 2**53 keeps int -> float conversion exact, so decoding's float division gives
    back exactly the encoded float; the equality check proves it for every value.
    """
    if not np.all(np.isfinite(a)):
        return None
    with np.errstate(over="ignore", invalid="ignore"):
        for k in range(_MAX_SCALE + 1):
            p = float(10**k)
            scaled = np.rint(a * p)
            if np.all(np.abs(scaled) < _LIMIT) and np.array_equal(scaled / p, a):
                return k, scaled.astype(np.int64)
    return None


def _encode_column(values: list[float], *, delta: bool = False) -> list[Any]:
    a = np.asarray(values, dtype=np.float64)
    scaled = _as_scaled_ints(a)
    if scaled is not None:
        k, ints = scaled
        if delta:  # a strike grid: equal steps compress to almost nothing
            return ["D", k, shuffle(np.diff(ints, prepend=np.int64(0)))]
        return ["d", k, shuffle(ints)]
    return ["f", shuffle(a)]


def _decode_column(col: list[Any], count: int) -> list[float | None]:
    kind = col[0]
    if kind in ("d", "D"):
        ints = unshuffle(col[2], count, "<i8")
        if kind == "D":
            ints = np.cumsum(ints)
        k = col[1]
        vals = ints.astype(np.float64) if k == 0 else ints / float(10**k)
        return vals.tolist()
    if kind == "f":
        return unshuffle(col[1], count, "<f8").tolist()
    raise BlockError(f"unknown column kind {kind!r}")


def _null_mask(values: list[float | None]) -> bytes | None:
    if None not in values:
        return None
    mask = bytearray((len(values) + 7) // 8)
    for i, v in enumerate(values):
        if v is None:
            mask[i >> 3] |= 1 << (i & 7)
    return bytes(mask)


_POWERS = np.array([float(10**k) for k in range(1, _MAX_SCALE + 1)])[:, None, None]  # k >= 1
_NET = [STRIKE_FIELDS.index(f) for f in ("call_gex", "put_gex", "net_gex")]
_STRIKE = STRIKE_FIELDS.index("strike")
_ALL_NULL_COLUMNS = {name: ["z"] for name in STRIKE_FIELDS}
_PROBE = 16  # values per row tried at each k before the whole row (`_scaled`)
_STACK_BYTES = 96 * 1024  # float64 values of the blocks encoded together (`encode_matrices`)
# reductions along an axis as the ufuncs themselves: `a.all(axis=1)` and its kin go through a
# Python wrapper first (~0.7 us each), and a block takes a dozen of them
_all = np.logical_and.reduce
_any = np.logical_or.reduce
_count = np.add.reduce


def _scaled(m: np.ndarray) -> tuple[list[int | None], np.ndarray]:
    """Per row of `m` (finite values only) the `k` of _as_scaled_ints, or None, and the int64
    lanes `_encode_column` stores for it before shuffling (scaled ints, or the float64 bits for
    None). The same test and arithmetic, but for every row and every k at once: k = 0 first
    (strikes, OI, volumes), then k = 1..6 in one broadcast for the rows left; a handful of
    numpy calls per block instead of several per column and k. Called under
    `np.errstate(over="ignore", invalid="ignore")`: huge values overflow, and fail every k.

    The rows left are nearly always full-precision floats (GEX), which fail every k at their
    first values: each k is tried on the first _PROBE values of each row first (the same
    arithmetic per value, so a k that fits a whole row fits there too), and only the rows some
    k fits there get the whole broadcast."""
    r0 = np.rint(m)
    ok0 = _all((r0 == m) & (np.abs(r0) < _LIMIT), axis=1).tolist()
    lanes = r0.astype("<i8")  # right for the rows with k = 0; the others are overwritten
    ks: list[int | None] = [0] * len(m)
    rest = [j for j, ok in enumerate(ok0) if not ok]
    if not rest:
        return ks, lanes
    probe = m[rest, :_PROBE]
    maybe = _any(
        _all(np.rint(probe[None, :, :] * _POWERS) / _POWERS == probe[None], axis=2), axis=0
    )
    floats = [j for j, hit in zip(rest, maybe.tolist(), strict=True) if not hit]
    rest = [j for j, hit in zip(rest, maybe.tolist(), strict=True) if hit]
    if rest:
        sub = m[rest]
        scaled = np.rint(sub[None, :, :] * _POWERS)  # (k - 1, row, value)
        ok = _all(scaled / _POWERS == sub[None], axis=2)
        if ok.any():  # full-precision floats (GEX) fail every k: no range check needed then
            ok &= _all(np.abs(scaled) < _LIMIT, axis=2)
        first = ok.argmax(axis=0).tolist()  # the smallest k that works, where one does
        for i, (j, hit) in enumerate(zip(rest, _any(ok, axis=0).tolist(), strict=True)):
            if hit:
                ks[j] = first[i] + 1
                lanes[j] = scaled[first[i], i]
            else:
                floats.append(j)
    for j in floats:
        ks[j] = None
    if floats:
        lanes[floats] = m[floats].view("<i8")  # m is float64 (`encode_matrix`'s contract)
    return ks, lanes


def _column(kind: str, k: int | None, data: bytes) -> list[Any]:
    return ["f", data] if k is None else [kind, k, data]


def encode_matrix(m: np.ndarray, extra: dict[str, Any] | None = None) -> bytes:
    """The block of a validated strike matrix (`model.strike_matrix`: a row per STRIKE_FIELDS
    column, NaN where the value is null, every other value finite), byte for byte what
    `encode_strikes` gives for the same rows, without going back to them."""
    return encode_matrices([(m, extra)])[0]


def encode_matrices(items: Sequence[tuple[np.ndarray, dict[str, Any] | None]]) -> list[bytes]:
    """`[encode_matrix(m, extra) for m, extra in items]`, the numpy work done once for all the
    matrices of one shape: per block it was the ~30 numpy calls, not the values, that cost
    (50 -> 33 us a block, 6 blocks of 200 strikes at a time). Every row is scaled on its own
    either way (`_scaled` works row by row), so the bytes are the same as one at a time."""
    if len(items) == 1:  # a lone commit (a slow watchlist): no grouping
        m, extra = items[0]
        if not m.shape[1]:
            return [_compress(_ALL_NULL_COLUMNS, 0, extra)]
        return _encode_stacked(m[None], [extra])
    out: list[bytes] = [b""] * len(items)
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, (m, _) in enumerate(items):
        groups.setdefault(m.shape, []).append(i)
    for shape, idx in groups.items():
        if not shape[1]:
            for i in idx:
                out[i] = _compress(_ALL_NULL_COLUMNS, 0, items[i][1])
            continue
        # a few blocks at a time: every temporary under glibc's mmap threshold (128 KB), or
        # each would be fresh pages, faulted in and given back per batch (16 blocks of 200
        # strikes at once: 7 faults a block, 30 -> 45 us a block with other allocations
        # between batches, as in the daemon; 8 at a time: none, 33 us)
        per = max(1, _STACK_BYTES // (8 * shape[0] * shape[1]))
        for at in range(0, len(idx), per):
            part = idx[at : at + per]
            ms = [items[i][0] for i in part]
            stacked = ms[0][None] if len(ms) == 1 else np.stack(ms)
            for i, block in zip(
                part, _encode_stacked(stacked, [items[i][1] for i in part]), strict=True
            ):
                out[i] = block
    return out


def _encode_stacked(ms: np.ndarray, extras: list[dict[str, Any] | None]) -> list[bytes]:
    """The blocks of matrices of one shape, stacked (block, STRIKE_FIELDS row, value). Every
    column of every block is scaled, laid out and byte-shuffled in one go; a column with
    nulls is scaled with its nulls as 0 (which fits every k, so k is that of the values
    present), then the nulls are dropped from its lanes. Over ~60 lines: one pass, kept whole
    so that each step reads as the format's definition in `_encode_rows`."""
    blocks, width, count = ms.shape
    nulls = np.isnan(ms)
    missing = _count(nulls, axis=2).tolist()
    c, p, n = _NET
    with np.errstate(over="ignore", invalid="ignore"):  # huge values: no identity, no k
        sums = _all(ms[:, c] + ms[:, p] == ms[:, n], axis=1).tolist()
        flat = np.where(nulls, 0.0, ms) if any(map(any, missing)) else ms
        ks, lanes = _scaled(flat.reshape(blocks * width, count))
    lanes = lanes.reshape(blocks, width, count)
    # the grid as deltas
    delta = [b for b in range(blocks) if ks[b * width + _STRIKE] is not None]
    delta = [b for b in delta if not missing[b][_STRIKE]]
    if len(delta) == blocks:
        lanes[:, _STRIKE, 1:] -= lanes[:, _STRIKE, :-1].copy()
    elif delta:
        lanes[delta, _STRIKE, 1:] -= lanes[delta, _STRIKE, :-1].copy()
    # byte 0 of every value first, then byte 1, ...: every column in one transposition
    raw = lanes.view(np.uint8).reshape(blocks, width, count, 8).transpose(0, 1, 3, 2).tobytes()
    size = 8 * count
    out = []
    for b, extra in enumerate(extras):
        miss, base = missing[b], b * width
        net_rule = None
        if not (miss[c] or miss[p] or miss[n]):
            if sums[b]:
                net_rule = "sum"
            else:  # the other convention, looked for only when the first does not hold
                with np.errstate(over="ignore", invalid="ignore"):
                    m = ms[b]
                    net_rule = "diff" if _all(m[c] - m[p] == m[n]) else None
        columns: dict[str, Any] = {}
        for j, name in enumerate(STRIKE_FIELDS):
            kind, k = "D" if j == _STRIKE else "d", ks[base + j]
            if j == n and net_rule is not None:
                columns[name] = ["n", net_rule]
            elif not miss[j]:
                at = (base + j) * size
                columns[name] = _column(kind, k, raw[at : at + size])
            elif miss[j] == count:
                columns[name] = ["z"]
            else:  # the values present, then the null bitmap
                row = lanes[b, j][~nulls[b, j]]
                if j == _STRIKE and k is not None:
                    row = np.diff(row, prepend=np.int64(0))
                data = row.view(np.uint8).reshape(-1, 8).T.tobytes()  # shuffled: lanes are <i8
                mask = np.packbits(nulls[b, j], bitorder="little").tobytes()
                columns[name] = [*_column(kind, k, data), mask]
        out.append(_compress(columns, count, extra))
    return out


def _compress(columns: dict[str, Any], count: int, extra: dict[str, Any] | None) -> bytes:
    payload = {"v": BLOCK_VERSION, "n": count, "c": columns}
    if extra:
        payload["x"] = extra
    # packed into a buffer kept per thread: a fresh bytes object grew by realloc from a few
    # bytes to ~15 KB per block, in memory gone cold since the last one (~1 us a block in the
    # daemon)
    raw = getattr(_local, "buf", None)
    if raw is None:
        raw = _local.buf = bytearray()
    _enc.encode_into(payload, raw)
    if len(raw) > _KEPT_MAX:
        _local.buf = None  # this call still reads `raw`; the next gets a small one
    return _compressor(len(raw)).compress(raw)


def _compressor(size: int) -> zstandard.ZstdCompressor:
    """The block compressor for a payload of `size` bytes: zstd level 3's parameters for that
    size, which depend only on its rounded-up power of two, but for the tables (ZSTD_TABLE_LOG).
    Kept by the thread for sizes up to _KEPT_MAX; a larger one is made for the call."""
    key = max(size - 1, 1).bit_length()
    cctxs: dict[int, zstandard.ZstdCompressor] | None = getattr(_local, "cctxs", None)
    if cctxs is None:
        cctxs = _local.cctxs = {}
    found = cctxs.get(key)
    if found is None:
        level = zstandard.ZstdCompressionParameters.from_level(ZSTD_LEVEL, source_size=1 << key)
        params = zstandard.ZstdCompressionParameters(
            window_log=level.window_log,
            hash_log=min(level.hash_log, ZSTD_TABLE_LOG),
            chain_log=min(level.chain_log, ZSTD_TABLE_LOG),
            search_log=level.search_log,
            min_match=level.min_match,
            target_length=level.target_length,
            strategy=level.strategy,
        )
        found = zstandard.ZstdCompressor(compression_params=params)
        if 1 << key <= _KEPT_MAX:
            cctxs[key] = found
    return found


def _decompressor() -> zstandard.ZstdDecompressor:
    """This thread's block decompressor."""
    found: zstandard.ZstdDecompressor | None = getattr(_local, "dctx", None)
    if found is None:
        found = _local.dctx = zstandard.ZstdDecompressor()
    return found


def _clean(m: np.ndarray, rows: Sequence[StrikeRow]) -> bool:
    """True when `m` (`rows_matrix(rows)`) is what `encode_matrix` expects: no inf, and a NaN
    only where the row holds None (rows made in code may hold a NaN value)."""
    if np.isinf(m).any():
        return False
    js, idx = np.nonzero(np.isnan(m))
    return all(
        getattr(rows[i], STRIKE_FIELDS[j]) is None
        for j, i in zip(js.tolist(), idx.tolist(), strict=True)
    )


def encode_strikes(rows: Sequence[StrikeRow], extra: dict[str, Any] | None = None) -> bytes:
    """The block of any rows. Rows holding only finite values and nulls (all a validated
    snapshot can hold) go through `encode_matrix`; anything else (inf, NaN, made in code)
    column by column, to the same bytes as far as both apply."""
    count = len(rows)
    if count:
        try:
            m = rows_matrix(rows)
        except (TypeError, ValueError, OverflowError):
            m = None
        if m is not None and _clean(m, rows):
            return encode_matrix(m, extra)
    return _encode_rows(rows, extra)


def _encode_rows(rows: Sequence[StrikeRow], extra: dict[str, Any] | None) -> bytes:
    """Column by column from the rows: the definition `encode_matrix` must match."""
    count = len(rows)
    columns: dict[str, Any] = {}
    if count:
        transposed = zip(*map(msgspec.structs.astuple, rows), strict=True)
        raw_cols = {f: list(c) for f, c in zip(STRIKE_FIELDS, transposed, strict=True)}
    else:
        raw_cols = {f: [] for f in STRIKE_FIELDS}
    net_rule = _net_identity(raw_cols) if count else None
    for name, values in raw_cols.items():
        if name == "net_gex" and net_rule is not None:
            columns[name] = ["n", net_rule]
            continue
        mask = _null_mask(values)
        present = values if mask is None else [v for v in values if v is not None]
        if not present:
            columns[name] = ["z"]  # all null
            continue
        col = _encode_column(present, delta=name == "strike")
        columns[name] = [*col, mask] if mask is not None else col
    return _compress(columns, count, extra)


def _net_identity(cols: dict[str, list[float | None]]) -> str | None:
    calls, puts, nets = cols["call_gex"], cols["put_gex"], cols["net_gex"]
    if None in calls or None in puts or None in nets:
        return None
    c, p, n = (np.asarray(x, dtype=np.float64) for x in (calls, puts, nets))
    with np.errstate(over="ignore", invalid="ignore"):  # huge or non-finite: no identity
        if np.array_equal(c + p, n):
            return "sum"
        if np.array_equal(c - p, n):
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
        return [
            StrikeRow(*vals) for vals in zip(*(self.cols[n] for n in STRIKE_FIELDS), strict=True)
        ]


_ALL_NULL = ["z"]
_FIELD_SET = frozenset(STRIKE_FIELDS)
_BATCH = 64


def _decode_named(col: list[Any], count: int) -> list[float | None]:
    kind = col[0]
    if kind == "z":
        return [None] * count
    has_mask = len(col) == (4 if kind in ("d", "D") else 3)
    if not has_mask:
        return _decode_column(col, count)
    nulls = np.unpackbits(np.frombuffer(col[-1], np.uint8), bitorder="little")[:count]
    present = iter(_decode_column(col, count - int(nulls.sum())))
    return [None if isnull else next(present) for isnull in nulls.tolist()]


def _is_plain(col: list[Any]) -> bool:
    """A numeric column without a null mask (`_decode_plain` handles these in one go)."""
    kind = col[0]
    return (kind in ("d", "D") and len(col) == 3) or (kind == "f" and len(col) == 2)


def _decode_plain(cols: list[list[Any]], count: int) -> np.ndarray:
    """Several maskless numeric columns at once (one row each): one unshuffle for all of them
    instead of a handful of numpy calls each. The arithmetic per value is `_decode_column`'s
    (the same int64 -> float64 cast and division), so the floats are the same bit for bit."""
    m = len(cols)
    lanes = np.frombuffer(b"".join([c[-1] for c in cols]), np.uint8)
    ints = lanes.reshape(m, 8, count).transpose(0, 2, 1).copy().view("<i8").reshape(m, count)
    out = ints.astype(np.float64)  # right as it is for the common `d` with k == 0
    for i, col in enumerate(cols):
        kind = col[0]
        if kind == "f":
            out[i] = ints[i].view("<f8")
        elif kind == "D" or col[1]:
            row = np.add.accumulate(ints[i]) if kind == "D" else ints[i]  # cumsum, less overhead
            k = col[1]
            if k == 0:
                out[i] = row
            else:
                np.divide(row, float(10**k), out=out[i])
    return out


def _open_block(blob: bytes) -> dict[str, Any]:
    """Decompress and unpack a block, checking its version."""
    try:
        payload = _dec.decode(_decompressor().decompress(blob))
        version = payload.get("v")
    except (zstandard.ZstdError, msgspec.DecodeError, AttributeError) as exc:
        raise BlockError(f"corrupt strike block: {exc}") from None
    if version != BLOCK_VERSION:
        raise BlockError(f"unsupported strike block version {version!r}")
    return payload


def decode_columns(blob: bytes, only: Iterable[str] | None = None) -> Columns:
    """The block's columns; `only` names the ones wanted and the others are not decoded (the
    block is columnar, so skipping one costs nothing). `rows()` needs every column."""
    wanted = STRIKE_FIELDS if only is None else tuple(only)
    unknown = [n for n in wanted if n not in STRIKE_FIELDS]
    if unknown:
        raise ValueError(f"decode_columns: unknown strike column(s) {unknown}")
    payload = _open_block(blob)
    count: int = payload["n"]
    stored: dict[str, list[Any]] = payload["c"]
    cols: dict[str, list[float | None]] = {}
    plain = [n for n in wanted if _is_plain(stored.get(n, _ALL_NULL))]
    if plain and count:
        arr = _decode_plain([stored[n] for n in plain], count)
        cols.update(zip(plain, arr.tolist(), strict=True))
    for name in wanted:
        if name in cols:
            continue
        col = stored.get(name, _ALL_NULL)
        if col[0] != "n":
            cols[name] = _decode_named(col, count)
            continue
        # net_gex is rebuilt from the call and put columns, decoded here if not wanted anyway
        calls = np.asarray(
            cols.get("call_gex") or _decode_named(stored.get("call_gex", _ALL_NULL), count),
            dtype=np.float64,
        )
        puts = np.asarray(
            cols.get("put_gex") or _decode_named(stored.get("put_gex", _ALL_NULL), count),
            dtype=np.float64,
        )
        cols[name] = (calls + puts if col[1] == "sum" else calls - puts).tolist()
    return Columns(count, cols, payload.get("x") or {})


def decode_arrays(blob: bytes, only: Iterable[str]) -> Arrays:
    """The named columns, values exactly `decode_columns`'; the others are not decoded."""
    wanted = only if isinstance(only, tuple) else tuple(only)
    if not _FIELD_SET.issuperset(wanted):
        unknown = [n for n in wanted if n not in _FIELD_SET]
        raise ValueError(f"decode_arrays: unknown strike column(s) {unknown}")
    payload = _open_block(blob)
    count: int = payload["n"]
    stored: dict[str, list[Any]] = payload["c"]
    picked = [stored.get(n, _ALL_NULL) for n in wanted]
    if count and all(map(_is_plain, picked)):  # the usual block: one batch, done
        block = _decode_plain(picked, count)
        return Arrays(count, dict(zip(wanted, block, strict=True)), payload.get("x") or {}, block)
    out: dict[str, np.ndarray] = {}
    plain = [n for n in wanted if _is_plain(stored.get(n, _ALL_NULL))]
    matrix: np.ndarray | None = None
    if plain and count:
        matrix = _decode_plain([stored[n] for n in plain], count)
        out.update(zip(plain, matrix, strict=True))
    rest = [n for n in wanted if n not in out]
    if rest:  # masked, all-null or net-by-identity columns: the general decoder, then arrays
        general = decode_columns(blob, rest)
        for name in rest:
            out[name] = np.array(general.cols[name], dtype=np.float64)  # None -> nan
    return Arrays(count, out, payload.get("x") or {}, None if rest else matrix)


def decode_arrays_many(blobs: Sequence[bytes], only: Iterable[str]) -> list[Arrays | BlockError]:
    """`decode_arrays` for each block (a BlockError in place of a bad one), with the numpy work
    done once for all blocks of the same shape: a page of a stream is hundreds of blocks with
    the same strike count and column encodings, and per block the numpy calls, not the bytes,
    were the cost. Same values as `decode_arrays`, bit for bit (the same casts and divisions,
    element by element). Windows of _BATCH blocks keep the work inside the CPU caches."""
    wanted = only if isinstance(only, tuple) else tuple(only)
    if not _FIELD_SET.issuperset(wanted):
        unknown = [n for n in wanted if n not in _FIELD_SET]
        raise ValueError(f"decode_arrays_many: unknown strike column(s) {unknown}")
    out: list[Arrays | BlockError] = []
    for start in range(0, len(blobs), _BATCH):
        out += _decode_window(blobs[start : start + _BATCH], wanted)
    return out


def _decode_window(blobs: Sequence[bytes], wanted: tuple[str, ...]) -> list[Arrays | BlockError]:
    out: dict[int, Arrays | BlockError] = {}
    groups: dict[tuple[Any, ...], list[tuple[int, list[list[Any]], dict[str, Any]]]] = {}
    for i, blob in enumerate(blobs):
        try:
            payload = _dec.decode(_decompressor().decompress(blob))
            version = payload.get("v")
            count, stored = payload["n"], payload["c"]
            picked = [stored.get(n, _ALL_NULL) for n in wanted]
        except (zstandard.ZstdError, msgspec.DecodeError, AttributeError, KeyError, TypeError):
            version = None
        if (
            version != BLOCK_VERSION
            or not isinstance(count, int)
            or count <= 0
            or not all(_is_plain(c) and len(c[-1]) == 8 * count for c in picked)
        ):
            try:  # the general path words the error, or decodes the unusual block
                out[i] = decode_arrays(blob, wanted)
            except BlockError as exc:
                out[i] = exc
            except (KeyError, ValueError, TypeError, AttributeError) as exc:
                out[i] = BlockError(f"undecodable strike block: {exc!r}")
            continue
        shape: tuple[Any, ...] = (count, *((c[0], c[1] if c[0] != "f" else None) for c in picked))
        groups.setdefault(shape, []).append((i, picked, payload.get("x") or {}))
    for shape, members in groups.items():
        count, kinds = shape[0], shape[1:]
        m = len(kinds)
        raw = b"".join([c[-1] for _, picked, _ in members for c in picked])
        lanes = np.frombuffer(raw, np.uint8)
        ints = (
            lanes.reshape(len(members), m, 8, count)
            .transpose(0, 1, 3, 2)
            .copy()
            .view("<i8")
            .reshape(len(members), m, count)
        )
        mats = ints.astype(np.float64)
        for j, (kind, k) in enumerate(kinds):
            if kind == "f":
                mats[:, j] = ints[:, j].view("<f8")
            elif kind == "D" or k:
                col = np.add.accumulate(ints[:, j], axis=1) if kind == "D" else ints[:, j]
                if k == 0:
                    mats[:, j] = col
                else:
                    np.divide(col, float(10**k), out=mats[:, j])
        for (i, _, extra), matrix in zip(members, mats, strict=True):
            out[i] = Arrays(count, dict(zip(wanted, matrix, strict=True)), extra, matrix)
    return [out[i] for i in range(len(blobs))]


def decode_strikes(blob: bytes) -> tuple[list[StrikeRow], dict[str, Any]]:
    block = decode_columns(blob)
    return block.rows(), block.extra
