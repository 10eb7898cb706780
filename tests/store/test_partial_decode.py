"""Decoding part of a strike block: the named columns are exactly those of a full decode."""

from __future__ import annotations

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gex_alertd import store
from gex_alertd.codec import (
    BlockError,
    decode_arrays,
    decode_arrays_many,
    decode_columns,
    encode_strikes,
)
from gex_alertd.model import STRIKE_FIELDS, StrikeRow
from gex_alertd.rules.columns import FIELDS, StrikeColumns, columns, from_block
from tests.store.test_codec_roundtrip import make_snapshot, row_st


def _same(a: list[float | None], b: list[float | None]) -> bool:
    """Bit-for-bit equal (nan == nan, -0.0 != 0.0): what `exact` means for floats."""
    return msgspec.msgpack.encode(a) == msgspec.msgpack.encode(b)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(row_st, max_size=30),
    st.lists(st.sampled_from(STRIKE_FIELDS), unique=True, max_size=len(STRIKE_FIELDS)),
    st.sampled_from([None, 1.0, -1.0]),
)
def test_named_columns_equal_the_full_decode(
    rows: list[StrikeRow], names: list[str], net_sign: float | None
) -> None:
    if net_sign is not None:  # net = call +/- put: the block stores net as an identity
        rows = [
            msgspec.structs.replace(r, net_gex=r.call_gex + net_sign * r.put_gex)
            if r.call_gex is not None and r.put_gex is not None
            else r
            for r in rows
        ]
    blob = encode_strikes(rows, {"endpoint_version": "v1"})
    full = decode_columns(blob)
    part = decode_columns(blob, names)
    assert sorted(part.cols) == sorted(names) and part.count == full.count == len(rows)
    assert part.extra == full.extra == {"endpoint_version": "v1"}
    for name in names:
        assert _same(part.cols[name], full.cols[name]), name


def test_net_gex_alone_is_rebuilt_from_call_and_put() -> None:
    rows = make_snapshot(50).strikes
    blob = encode_strikes(rows)
    part = decode_columns(blob, ["net_gex"])
    assert list(part.cols) == ["net_gex"]
    assert part.cols["net_gex"] == [r.net_gex for r in rows]


def test_unknown_column_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"unknown strike column.*'gamma'"):
        decode_columns(encode_strikes([]), ["strike", "gamma"])


@pytest.mark.parametrize("n", [0, 1, 200])
def test_fields_columns_give_the_snapshot_without_rows_and_the_rule_view(n: int) -> None:
    snap = make_snapshot(n)
    snap = msgspec.structs.replace(snap, endpoint_version="v2", data_as_of={"oi": "2026-05-08"})
    fields = store.encode_fields(snap)
    bare, block = store.decode_fields_columns(fields, FIELDS)
    assert bare == msgspec.structs.replace(snap, strikes=[])
    assert same_view(from_block(block), columns(store.decode_fields(fields)))


def same_view(a: StrikeColumns, b: StrikeColumns) -> bool:
    """Equal float for float (NaN, the null marker, equal to NaN; -0.0 not equal to 0.0)."""
    return all(
        x.dtype == y.dtype == np.float64
        and np.array_equal(x, y, equal_nan=True)
        and np.array_equal(np.signbit(x), np.signbit(y))
        for x, y in zip(a, b, strict=True)
    )


@settings(max_examples=200, deadline=None)
@given(st.lists(row_st, max_size=30))
def test_arrays_equal_the_full_decode(rows: list[StrikeRow]) -> None:
    blob = encode_strikes(rows)
    full = decode_columns(blob)
    arrays = decode_arrays(blob, STRIKE_FIELDS)
    assert arrays.count == len(rows)
    for name in STRIKE_FIELDS:
        want = np.array(full.cols[name], dtype=np.float64)
        got = arrays.cols[name]
        assert np.array_equal(got, want, equal_nan=True), name
        assert np.array_equal(np.signbit(got), np.signbit(want)), name


def test_fields_columns_bad_entry_is_a_stored_entry_error() -> None:
    fields = store.encode_fields(make_snapshot(3))
    fields[store.F_STRIKES] = b"garbage"
    with pytest.raises(store.StoredEntryError, match="corrupt strike block"):
        store.decode_fields_columns(fields, FIELDS)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.lists(row_st, max_size=6).map(encode_strikes),
            st.sampled_from([b"garbage", b""]),
            st.integers(1, 6).map(lambda n: encode_strikes(make_snapshot(n, nulls=False).strikes)),
        ),
        max_size=8,
    )
)
def test_many_equals_one_by_one(blobs: list[bytes]) -> None:
    many = decode_arrays_many(blobs, FIELDS)
    assert len(many) == len(blobs)
    for blob, got in zip(blobs, many, strict=True):
        try:
            want = decode_arrays(blob, FIELDS)
        except BlockError:
            assert isinstance(got, BlockError)
            continue
        assert not isinstance(got, BlockError)
        assert got.count == want.count and got.extra == want.extra
        for name in FIELDS:
            assert np.array_equal(got.cols[name], want.cols[name], equal_nan=True), name
            assert np.array_equal(np.signbit(got.cols[name]), np.signbit(want.cols[name]))


def test_fields_columns_many_reports_bad_entries_in_place() -> None:
    good = [store.encode_fields(make_snapshot(n, seed=n)) for n in (200, 200, 3)]
    bad = dict(good[0])
    bad[store.F_STRIKES] = b"garbage"
    entries = [good[0], bad, good[1], {b"symbol": b"SPY"}, good[2]]
    out = store.decode_fields_columns_many(entries, FIELDS)
    assert [type(x).__name__ for x in out] == [
        "tuple", "StoredEntryError", "tuple", "StoredEntryError", "tuple",
    ]  # fmt: skip
    for fields, item in zip(entries, out, strict=True):
        if isinstance(item, tuple):
            one = store.decode_fields_columns(fields, FIELDS)
            assert item[0] == one[0]
            assert same_view(from_block(item[1]), from_block(one[1]))
