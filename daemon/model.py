"""Typed structs for the Flow GEX wire format and the alert event.

The wire contract lives in shared/flowgex-api.md. Decoding is lenient where the provider is
allowed to grow (unknown fields are ignored, nullable fields stay None) and strict where garbage
would poison storage or rules (types, finiteness, a positive spot).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import cached_property
from itertools import chain
from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec
import numpy as np

from gex_alertd.quoted import quoted

if TYPE_CHECKING:  # rules/ imports this module and must load without redis
    from redis.typing import EncodableT, FieldT

FLIP_AVAILABLE = "available"
# data_as_of's documented feeds, in the documented order (flowgex-api.md); the provider may add
# more, which are read like these
FEEDS = (
    "node", "equity_feed", "equity_options_feed", "index_feed", "index_options_feed",
    "futures_feed", "futures_options_feed", "flow_feed", "oi_feed", "macro_feed",
)  # fmt: skip


class StrikeRow(msgspec.Struct, frozen=True, omit_defaults=False, gc=False):
    """One per-strike row. GEX in dollars, OI and volume in contracts.

    `gc=False`: numbers only, so a row can never be part of a reference cycle; 200 untracked
    rows per snapshot are cheaper to make and free, and do not drive the collector."""

    strike: float
    call_gex: float | None = None
    put_gex: float | None = None
    net_gex: float | None = None
    call_oi: float | None = None
    put_oi: float | None = None
    call_volume: float | None = None
    put_volume: float | None = None
    call_oi_change: float | None = None
    put_oi_change: float | None = None


STRIKE_FIELDS: tuple[str, ...] = StrikeRow.__struct_fields__


# A text field of the body, bounded far past any real value (a status reason is < 32
# characters, a feed's timestamp ~33, an expiry 10): each is stored as it came with every
# snapshot and some ride in alerts, so a value of megabytes is refused when decoding (msgspec
# checks the length in C) instead of bloating every entry. The provider's feeds: at most 64
Text = Annotated[str, msgspec.Meta(max_length=128)]
Feeds = Annotated[dict[Text, Text | None], msgspec.Meta(max_length=64)]
# Strike rows of one body, bounded far past any real chain (every expiry of SPX is a few
# thousand strikes): tiny rows fit ~900,000 in the 16 MB body bound, and each poll of such a
# body spent ~1.3 s of the loop decoding and encoding them, ran every rule over each row and
# stored the block. msgspec checks the length while decoding, before the rows are built.
MAX_STRIKES = 20_000
# msgspec builds a list before it checks its length (900,000 tiny rows: ~110 MB for a moment),
# so a large body has its rows counted first, one C scan; a body this small cannot hold
# MAX_STRIKES rows (~40 bytes each at least), and a real one (~42 KB) pays nothing
_COUNT_ROWS_PAST = 512 * 1024


class FlowGex(msgspec.Struct, frozen=True, dict=True):
    """A `GET /v1/flow/gex/{symbol}` response (also the shape of `/v1/exposure/gex`).

    `dict=True` only so that data derived from the rows once per snapshot (`strike_matrix`,
    the rules' column view) can live on the snapshot itself: it is not a field, so it is never
    encoded, compared or copied (`msgspec.structs.replace` and `copy` start without it)."""

    symbol: str
    as_of: datetime
    underlying_price: float
    live_net_gex: float
    live_net_gex_label: Text | None = None
    live_gamma_flip: float | None = None
    gamma_flip_status: Text | None = None
    expiry: Text | None = None
    strikes: Annotated[list[StrikeRow], msgspec.Meta(max_length=MAX_STRIKES)] = []
    endpoint_version: Text | None = None
    data_as_of: Feeds | None = None

    @property
    def flip(self) -> float | None:
        """The flip when the provider says it is usable; None means "no flip now", never 0."""
        if self.live_gamma_flip is None:
            return None
        if self.gamma_flip_status not in (None, FLIP_AVAILABLE):
            return None
        return self.live_gamma_flip

    @cached_property
    def as_of_ms(self) -> int:
        """Cached: the stream id, the rules, the commit and the client each ask for it."""
        return as_ms(self.as_of)


class PayloadError(ValueError):
    """A 200 response whose body cannot be trusted: nothing from it may be stored."""


_decoder = msgspec.json.Decoder(FlowGex)
_astuple = msgspec.structs.astuple
_WIDTH = len(STRIKE_FIELDS)
_MATRIX = "_strike_matrix"  # key in a snapshot's __dict__
_ROWLESS = "_rowless"  # in a snapshot's __dict__: its rows were dropped, the matrix holds them


# msgspec gives up on JSON nested deeper than ~1,000 levels (an unknown field it skips, an Any)
# with a RecursionError, no DecodeError: from outside, that is one more malformed body
TOO_DEEP = "JSON nested too deeply"


def decode_json(raw: bytes | str) -> Any:
    """Untyped JSON from outside (an error body, a receiver's answer); nested too deeply it
    raises msgspec.DecodeError like any other malformed body."""
    try:
        return msgspec.json.decode(raw)
    except RecursionError:
        raise msgspec.DecodeError(TOO_DEEP) from None


def as_ms(ts: datetime) -> int:
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    # integer arithmetic keeps the millisecond exact (timestamp() goes through a float)
    delta = ts - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def decode_flow_gex(
    body: bytes,
    *,
    symbol: str | None = None,
    notes: list[str] | None = None,
    aggregated: bool = False,
) -> FlowGex:
    """Decode and validate one response body; raise PayloadError naming the problem.

    The snapshot carries its strike matrix (`strike_matrix`), built here once: validation,
    the rules and the strike block all read it instead of the rows.

    Strikes: a zero, negative or repeated strike refuses the payload (which of two rows for
    one strike is right cannot be known, and a repeat made oi_change compare a strike with
    itself); rows out of order are sorted by strike, and `notes` (when given) gets a line
    saying so, for the caller to log. The body's symbol must equal the requested one after
    upper-casing ASCII letters only (`ıwm` is not IWM: str.upper() maps the dotless i to I);
    the snapshot then carries the requested symbol, upper-cased.

    `aggregated`: the request had no `expiry`. The body's `expiry` is then the echo of a filter
    that was not sent, and whatever it holds (null as documented, a date, "", free text) is
    dropped, with a note: not refused, since the snapshot is the aggregated one asked for, and
    not kept, since it would become each alert's expiry (its title, id and Alertmanager label)
    for an upstream that sends any text there. With an expiry requested, the caller compares."""
    if len(body) > _COUNT_ROWS_PAST and body.count(b'"strike"') > MAX_STRIKES:
        # an upper bound of the rows (each needs its "strike"); an escaped key gets past it,
        # and then msgspec's own bound refuses the list
        raise PayloadError(f"malformed Flow GEX payload: more than {MAX_STRIKES} strike rows")
    try:
        snap = _decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise PayloadError(f"malformed Flow GEX payload: {exc}") from None
    except UnicodeDecodeError as exc:  # msgspec raises it for invalid UTF-8 inside a string
        raise PayloadError(f"malformed Flow GEX payload: invalid UTF-8 ({exc.reason})") from None
    except RecursionError:  # an unknown field nested ~1,000 deep (TOO_DEEP)
        raise PayloadError(f"malformed Flow GEX payload: {TOO_DEEP}") from None
    matrix = _decoded_matrix(snap.strikes)
    problems = _scalar_problems(snap)
    order, strike_problem = _strike_order(matrix[0])
    if strike_problem:
        problems.append(strike_problem)
    # JSON has no NaN or inf, and msgspec refuses a number out of float range, so this never
    # fires on a decoded body; kept (one numpy call on the matrix) so the guarantee does not
    # rest on the parser alone. NaN in the matrix is a null here, nothing else.
    if np.isinf(matrix).any():
        problems += _row_problems(snap.strikes)
    if symbol is not None and snap.symbol != symbol:  # the same string: the usual case
        if ascii_upper(snap.symbol) != ascii_upper(symbol):
            # the body's symbol clipped: it is the upstream's, of any length
            problems.append(f"symbol {quoted(snap.symbol)} does not match the requested {symbol!r}")
    ms = as_ms(snap.as_of)
    if ms <= 0:
        # the stream ID is the as_of in ms: 0 and below are no valid ID, and no real snapshot
        problems.append(f"as_of {iso_utc(snap.as_of)} is not after 1970-01-01")
    if problems:
        raise PayloadError("invalid Flow GEX payload: " + "; ".join(problems))
    if symbol is not None and snap.symbol != symbol:
        # the requested symbol in another ASCII case (checked above): its upper-case spelling,
        # the one the keys, the rules, the alert ids and the silences' matchers use (an alert
        # that said `iwm` was not held by a silence on IWM)
        snap = msgspec.structs.replace(snap, symbol=ascii_upper(symbol))
    if aggregated and snap.expiry is not None:
        if notes is not None:
            notes.append(
                f"expiry {quoted(snap.expiry)} in the body of an aggregated request: dropped"
            )
        snap = msgspec.structs.replace(snap, expiry=None)
    if order is not None:
        matrix = np.ascontiguousarray(matrix[:, order])
        snap = msgspec.structs.replace(snap, strikes=[snap.strikes[i] for i in order])
        if notes is not None:
            notes.append(f"{len(order)} strikes out of order: sorted by strike")
    if snap.as_of.tzinfo is None:
        snap = msgspec.structs.replace(snap, as_of=snap.as_of.replace(tzinfo=UTC))
    matrix.flags.writeable = False  # shared by the codec and the rules: nobody may change it
    snap.__dict__[_MATRIX] = matrix
    snap.__dict__["as_of_ms"] = ms  # `as_of_ms`, worked out above (a naive as_of is UTC there)
    return snap


def rowless(snap: FlowGex, *, in_place: bool = False) -> FlowGex:
    """`snap` without its rows when its matrix holds them (a snapshot `decode_flow_gex` made;
    any other is returned as it is): `strikes == []`, the strike data in the matrix alone,
    which the codec and the rules read anyway; `strike_rows` and `with_rows` give the rows back
    exactly. The daemon's poll path takes this right after decoding: 200 rows are ~2,200 Python
    objects, and freed then, while still in the CPU cache, instead of after the commit's round
    trip, they cost ~1/4 of the daemon's CPU per stored snapshot less (bench/README.md,
    pipeline). `msgspec.structs.replace` of a rowless snapshot has neither rows nor matrix:
    take `with_rows` first.

    `in_place`: `snap` itself loses its rows (for its only holder, the poll path, which then
    makes no second snapshot: ~2 us in the daemon); otherwise a new snapshot, `snap` as it was."""
    m = strike_matrix(snap)
    if m is None or not snap.strikes:
        return snap
    if in_place:
        msgspec.structs.force_setattr(snap, "strikes", [])
        snap.__dict__[_ROWLESS] = True
        return snap
    lean = msgspec.structs.replace(snap, strikes=[])
    lean.__dict__.update(snap.__dict__)  # the matrix and what was derived from it
    lean.__dict__[_ROWLESS] = True
    return lean


def ascii_upper(text: str) -> str:
    """Upper-case ASCII letters only; anything else stays as it is (so never equals a ticker)."""
    return text.translate(_ASCII_UPPER)


_ASCII_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _strike_order(strikes: np.ndarray) -> tuple[np.ndarray | None, str | None]:
    """(the sorting order when the strikes are valid but out of order, the problem when they
    are not valid). One vectorised check on the hot path: strictly increasing from a positive
    first strike means every strike is positive and none repeats."""
    n = len(strikes)
    if n == 0 or (strikes[0] > 0 and bool((strikes[1:] > strikes[:-1]).all())):
        return None, None
    bad = np.flatnonzero(~(strikes > 0))  # NaN cannot come from JSON, but is no strike either
    if len(bad):
        i = int(bad[0])
        return None, f"strikes[{i}]: strike must be positive, got {float(strikes[i])!r}"
    order = np.argsort(strikes, kind="stable")
    ordered = strikes[order]
    same = np.flatnonzero(np.diff(ordered) == 0)
    if len(same):
        k = float(ordered[same[0]])
        return None, f"strike {k:g} appears more than once"
    return order, None


def rows_matrix(rows: Sequence[StrikeRow]) -> np.ndarray:
    """The rows as one C-contiguous float64 array of shape (len(STRIKE_FIELDS), len(rows)):
    one row per column, in STRIKE_FIELDS order, NaN for null. `float(m[j, i])` is exactly the
    row's float. Raises TypeError, ValueError or OverflowError for values numpy cannot hold as
    a float64 (only rows built in code can have them)."""
    return _matrix(rows, typed=False)


def _decoded_matrix(rows: list[StrikeRow]) -> np.ndarray:
    """`rows_matrix` of rows that `_decoder` made just now, so every value is a float or None
    (the struct's types, which msgspec enforces: a JSON int becomes a float, anything else is
    refused): packed, each value is 9 bytes tagged float64 or one nil byte, so the tags need
    no check (`_packed_matrix(..., typed=True)`): without a null the values are read at
    once."""
    return _matrix(rows, typed=True)


def _matrix(rows: Sequence[StrikeRow], *, typed: bool) -> np.ndarray:
    n = len(rows)
    if not n:
        return np.empty((_WIDTH, 0), dtype=np.float64)
    tuples = list(map(_astuple, rows))
    try:
        m = _packed_matrix(_pack(tuples), n, typed=typed)
    except (TypeError, ValueError, OverflowError):  # not numbers (rows made in code): below
        m = None
    if m is not None:
        return m
    # one flat C-level pass over the values into one preallocated array (None -> nan, as
    # np.array does): np.array of the same values as a list first scans them for nesting and
    # then converts each one generically, 92 against 37 us at 200 strikes (numpy 2.4)
    flat = chain.from_iterable(tuples)
    return np.fromiter(flat, np.float64, count=n * _WIDTH).reshape(n, _WIDTH).T.copy()


# `rows_matrix`'s fast way: msgspec packs the rows' tuples as msgpack in C (~5 us at 200
# strikes), every float as a float64 (the tag 0xcb and its 8 bytes, big-endian) and a null as
# nil (the one byte 0xc0), so rows holding only floats are a fixed layout that numpy reads in
# one strided cast: ~16 us against ~33 for numpy converting 2,000 Python floats one by one.
# Each null makes the layout 8 bytes shorter from there on: up to _NILS_MAX of them are found
# one by one and padded back to 9 bytes; more (or anything but floats and nulls: rows made in
# code) take the per-value path, after a pack that was for nothing (~7 us at 200 strikes). Bit
# for bit the same floats either way (the tests pin it).
_row_packer = msgspec.msgpack.Encoder()
_ROW_BYTES = 1 + 9 * _WIDTH  # a packed row: its array header (0x9a), then 10 values
_F64, _NIL = 0xCB, 0xC0
_NILS_MAX = 8  # past this many nulls the search costs more than the per-value path
# The rows are packed into one buffer kept per thread, after _FRONT zero bytes: no new buffer
# grown by reallocation per snapshot (18 KB at 200 strikes), and the tags at each shift read
# in place (the zeros before, and 8 per null appended after, are what a shift reads past
# either end: no float tag). 2 us of the 23 a snapshot's matrix cost with caches as cold as in
# the daemon.
_FRONT = 8 * _NILS_MAX
_kept = threading.local()  # per thread: a matrix built in another thread never shares it
# what the kept buffer may hold after a snapshot (~5,700 strikes): a larger one (a body of
# many rows, up to source.max_body_bytes) is used once and let go, not kept for good
_KEPT_MAX = 512 * 1024


def _pack(tuples: list[tuple[Any, ...]]) -> bytearray | bytes:
    """The tuples packed at `_FRONT` of this thread's kept buffer (truncated after them), or
    into a new buffer of their own after _FRONT zeros while a view of the kept one is still
    alive (an exception's frame holding one: it cannot be resized then)."""
    buf = getattr(_kept, "buf", None)
    if buf is None:
        buf = _kept.buf = bytearray(_FRONT)
    try:
        _row_packer.encode_into(tuples, buf, _FRONT)
    except BufferError:
        return bytes(_FRONT) + _row_packer.encode(tuples)
    if len(buf) > _KEPT_MAX:
        _kept.buf = bytearray(_FRONT)  # this call still reads `buf`; the next gets a small one
    return buf


def _packed_matrix(buf: bytearray | bytes, n: int, *, typed: bool = False) -> np.ndarray | None:
    """`rows_matrix` of the `n` rows whose tuples msgpack packed into `buf` after _FRONT
    zeros (`_pack`), or None when they are not all floats and nulls (or hold more than
    _NILS_MAX nulls). `typed`: the values are known to be floats and nulls (`_decoded_matrix`),
    so their tags are not checked."""
    head = 1 if n < 16 else 3 if n < 2**16 else 5  # the list's array header
    size = len(buf) - _FRONT
    nils, odd = divmod(head + n * _ROW_BYTES - size, 8)
    if odd or not 0 <= nils <= _NILS_MAX:
        return None
    first = _FRONT + head + 1  # the first value's tag
    if typed and not nils:  # every value a float: the fixed layout, nothing to look for
        return _read(buf, n, first)
    if nils:
        buf = buf + bytes(8 * nils) if isinstance(buf, bytes) else _grown(buf, 8 * nils)
    # the tag of each value (in row order) as it would sit after 0, 1, ... nils: the z-th nil
    # is the first value after the previous one whose tag is not a float at shift z, and every
    # value after the last one is a float at shift `nils` (copied first: numpy compares a
    # strided view of bytes at a third of the speed)
    shifted = _tags(buf, first, n, nils + 1).copy() != _F64
    other = shifted.reshape(nils + 1, n * _WIDTH)
    start, last = 0, _FRONT
    parts: list[bytes | memoryview] = []
    cells: list[tuple[int, int]] = []
    with memoryview(buf) as view:  # released here: the kept buffer can be resized again
        for z in range(nils):
            i = start + int(other[z, start:].argmax())  # `start` itself when there is none
            row, col = divmod(i, _WIDTH)
            at = first + row * _ROW_BYTES + col * 9 - 8 * z
            if not typed and (at >= _FRONT + size or buf[at] != _NIL):
                return None
            parts += (view[last : at + 1], _PAD)  # the nil as 9 bytes, like a float
            last = at + 1
            cells.append((col, row))
            start = i + 1
        if not typed and other[nils, start:].any():
            return None
        if nils:
            parts.append(view[last : _FRONT + size])
            buf = b"".join(parts)
    m = _read(buf, n, first if not nils else head + 1)
    for col, row in cells:
        m[col, row] = np.nan
    return m


_PAD = bytes(8)


def _grown(buf: bytearray, by: int) -> bytearray | bytes:
    """`buf` with `by` zeros appended, in place unless a view of it is still alive."""
    try:
        buf += bytes(by)
    except BufferError:
        return bytes(buf) + bytes(by)
    return buf


def _read(buf: bytearray | bytes, n: int, first: int) -> np.ndarray:
    """The (_WIDTH, n) float64 matrix of `n` packed rows of 9-byte values, the first value's
    tag at `first`."""
    values = np.ndarray((_WIDTH, n), ">f8", buf, offset=first + 1, strides=(9, _ROW_BYTES))
    return values.astype(np.float64, order="C")


def _tags(buf: bytearray | bytes, first: int, n: int, shifts: int) -> np.ndarray:
    """The tag byte of every packed value, (shift, row, column), at `shifts` layouts each 8
    bytes before the previous one (the first value's tag at `first` at shift 0)."""
    return np.ndarray((shifts, n, _WIDTH), np.uint8, buf, offset=first, strides=(-8, _ROW_BYTES, 9))


def strike_matrix(snap: FlowGex) -> np.ndarray | None:
    """The strike matrix of a snapshot that `decode_flow_gex` made (`rows_matrix` of its rows,
    read-only), validated: NaN means null and every other value is finite. None for a
    snapshot built any other way (read back from Redis, made in code), whose rows may hold
    anything; callers then work from the rows. A `rowless` snapshot has it as its only strike
    data."""
    m: np.ndarray | None = snap.__dict__.get(_MATRIX)
    if m is None:
        return None
    n = len(snap.strikes)
    if n == m.shape[1] or (n == 0 and snap.__dict__.get(_ROWLESS)):
        return m
    return None  # rows appended to since: not theirs


def strike_rows(snap: FlowGex) -> list[StrikeRow]:
    """The snapshot's rows: `snap.strikes`, or for a rowless snapshot the rows its matrix was
    built from, value for value (the matrix holds the same doubles; NaN is a null there)."""
    if snap.strikes or not snap.__dict__.get(_ROWLESS):
        return snap.strikes
    m = snap.__dict__[_MATRIX]
    # the strike is never null (a positive number, checked on decode)
    return [StrikeRow(r[0], *[None if v != v else v for v in r[1:]]) for r in m.T.tolist()]


def with_rows(snap: FlowGex) -> FlowGex:
    """`snap` with its rows (itself unless it is rowless), for a reader of `strikes`: a rule
    type that reads rows, the whole snapshot as JSON."""
    if snap.strikes or not snap.__dict__.get(_ROWLESS):
        return snap
    full = msgspec.structs.replace(snap, strikes=strike_rows(snap))
    full.__dict__.update(snap.__dict__)  # the matrix and what was derived from it, attached
    del full.__dict__[_ROWLESS]
    return full


def _finite(x: float | None) -> bool:
    return x is None or math.isfinite(x)


def validate(snap: FlowGex) -> list[str]:
    return _scalar_problems(snap) + _row_problems(snap.strikes)


def _scalar_problems(snap: FlowGex) -> list[str]:
    problems: list[str] = []
    if not snap.symbol:
        problems.append("empty symbol")
    if not (math.isfinite(snap.underlying_price) and snap.underlying_price > 0):
        problems.append(f"underlying_price must be a positive number, got {snap.underlying_price}")
    if not math.isfinite(snap.live_net_gex):
        problems.append("live_net_gex is not finite")
    if not _finite(snap.live_gamma_flip):
        problems.append("live_gamma_flip is not finite")
    elif snap.live_gamma_flip is not None and snap.live_gamma_flip <= 0:
        problems.append(f"live_gamma_flip must be positive, got {snap.live_gamma_flip}")
    return problems


def _row_problems(rows: Sequence[StrikeRow]) -> list[str]:
    # any inf/NaN makes the sum non-finite, so a finite sum proves every value finite; only a
    # non-finite one (or overflow) scans per field. One flat C-level iterator, no frame per row
    flat = chain.from_iterable(map(_astuple, rows))
    if math.isfinite(sum(filter(None, flat))):
        return []
    for i, row in enumerate(rows):
        bad = [f for f in STRIKE_FIELDS if not _finite(getattr(row, f))]
        if bad:
            return [f"strikes[{i}]: non-finite {', '.join(bad)}"]
    return []


# ---------------------------------------------------------------------------------------------
# Alert event (contract: this is the webhook body)


AlertStatus = Literal["firing", "resolved"]
FIRING: AlertStatus = "firing"
RESOLVED: AlertStatus = "resolved"


class AlertEvent(msgspec.Struct, frozen=True, omit_defaults=False):
    """One alert. `status` is `firing`, or `resolved` when a rule with a resolved state
    (stale_data, source_failing, flip_guard, level_proximity exit) recovers: a resolved
    event carries the same group key (`group_key`: rule, symbol, expiry) as the firing one
    and an id of its own, as Alertmanager does. An event stored before `status` existed
    decodes as `firing`."""

    id: str
    rule: str
    type: str
    symbol: str
    expiry: str | None
    severity: str
    as_of: str
    fired_at: str
    summary: str
    status: AlertStatus = FIRING
    details: dict[str, Any] = {}

    @property
    def resolved(self) -> bool:
        return self.status == RESOLVED


def group_key(event: AlertEvent) -> str:
    """What a firing event and its resolved event share: the incident's identity."""
    return f"{event.rule}/{event.symbol}/{event.expiry or ''}"


def iso_utc(ts: datetime) -> str:
    """ISO 8601 in UTC with millisecond precision and a Z suffix."""
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


_json_encoder = msgspec.json.Encoder()
_alert_decoder = msgspec.json.Decoder(AlertEvent)


def encode_alert(event: AlertEvent) -> bytes:
    return _json_encoder.encode(event)


def decode_alert(body: bytes | str) -> AlertEvent:
    """An outbox entry's event; msgspec.DecodeError (or ValidationError) when it is none."""
    try:
        return _alert_decoder.decode(body)
    except RecursionError:  # written by hand, an unknown field nested ~1,000 deep (TOO_DEEP)
        raise msgspec.DecodeError(TOO_DEEP) from None


# Outbox entry layout on `gex:{SYM}:alerts` (shared by the rule commit and the notifiers):
#   id        the alert id (deterministic)
#   channels  the channel names the rule routes to, as a JSON list (entries written before
#             this layout hold them comma-joined, which a name with a comma made ambiguous)
#   symbol    for per-symbol ordering and grouping
#   event     the AlertEvent as JSON
def outbox_fields(event: AlertEvent, channels: list[str]) -> dict[FieldT, EncodableT]:
    # typed as XADD's fields (a dict is invariant, so dict[str, bytes] would not be accepted)
    return {
        "id": event.id.encode(),
        "channels": encode_channels(channels),
        "symbol": event.symbol.encode(),
        "event": encode_alert(event),
    }


_channels_decoder = msgspec.json.Decoder(list[str])


def encode_channels(channels: list[str]) -> bytes:
    return _json_encoder.encode(list(channels))


def decode_channels(raw: bytes | str) -> list[str]:
    """The `channels` field of an outbox entry: a JSON list, or the older comma-joined form."""
    text = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
    if text.startswith("["):
        try:
            return _channels_decoder.decode(text)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return []  # routed nowhere: every channel acks it, none sends a garbled route
    return [c for c in text.split(",") if c]
