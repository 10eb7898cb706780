"""model: the decoded snapshot and the strike matrix it carries for the codec and the rules."""

from __future__ import annotations

import copy
import math
import threading

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gex_alertd.model import (
    STRIKE_FIELDS,
    PayloadError,
    StrikeRow,
    as_ms,
    decode_flow_gex,
    rowless,
    rows_matrix,
    strike_matrix,
    strike_rows,
    validate,
    with_rows,
)
from gex_alertd.store import encode_fields
from tests.rules.factory import chain, snap
from tests.support.upstream import flow_gex_body


def body(**kw: object) -> bytes:
    raw = flow_gex_body("SPY", as_of="2026-03-02T15:04:05.250Z", strikes=12)
    raw["strikes"][3]["call_oi_change"] = None
    raw["strikes"][7]["put_gex"] = None
    raw.update(kw)
    return msgspec.json.encode(raw)


def test_decoded_snapshot_carries_its_rows_as_a_read_only_matrix() -> None:
    s = decode_flow_gex(body())
    m = strike_matrix(s)
    assert m is not None and m.shape == (len(STRIKE_FIELDS), 12) and m.flags.c_contiguous
    assert not m.flags.writeable
    for i, row in enumerate(s.strikes):
        for j, value in enumerate(msgspec.structs.astuple(row)):
            got = float(m[j, i])
            assert math.isnan(got) if value is None else got == value
    assert np.array_equal(m, rows_matrix(s.strikes), equal_nan=True)


def test_the_matrix_is_not_part_of_the_snapshot() -> None:
    s = decode_flow_gex(body())
    plain = msgspec.json.decode(body(), type=type(s))  # same fields, no matrix
    assert s == plain and msgspec.json.encode(s) == msgspec.json.encode(plain)
    assert strike_matrix(plain) is None
    assert strike_matrix(msgspec.structs.replace(s, strikes=s.strikes[:5])) is None
    assert strike_matrix(copy.copy(s)) is None
    s.strikes.append(StrikeRow(1.0))  # rows changed after decoding: the matrix is not theirs
    assert strike_matrix(s) is None


def test_a_rowless_snapshot_gives_its_rows_back_exactly() -> None:
    raw = msgspec.json.decode(body())
    raw["strikes"][4]["call_gex"] = -0.0  # the sign of a zero survives the matrix too
    raw["strikes"].reverse()  # sorted on decode, with and without the rows
    text = msgspec.json.encode(raw)
    full = decode_flow_gex(text)
    lean = rowless(decode_flow_gex(text))
    assert lean.strikes == [] and len(full.strikes) == 12
    m, m_full = strike_matrix(lean), strike_matrix(full)
    assert m is not None and m_full is not None and np.array_equal(m, m_full, equal_nan=True)
    assert strike_rows(full) is full.strikes
    rows = strike_rows(lean)
    assert msgspec.json.encode(rows) == msgspec.json.encode(full.strikes)  # nulls, -0.0
    assert rows[3].call_oi_change is None or rows[8].call_oi_change is None
    back = with_rows(lean)
    assert back == full and msgspec.json.encode(back) == msgspec.json.encode(full)
    assert strike_matrix(back) is m and with_rows(full) is full
    assert encode_fields(lean) == encode_fields(full)  # the same stored entry


def test_a_snapshot_made_rowless_in_place_is_the_rowless_copy() -> None:
    # the poll path's way: the decoded snapshot itself loses its rows, no second snapshot
    text = body()
    copy_, mine = rowless(decode_flow_gex(text)), decode_flow_gex(text)
    assert rowless(mine, in_place=True) is mine and mine.strikes == []
    assert mine == copy_ and mine.__dict__.keys() == copy_.__dict__.keys()
    m, m_copy = strike_matrix(mine), strike_matrix(copy_)
    assert m is not None and m_copy is not None and m.tobytes() == m_copy.tobytes()
    assert with_rows(mine) == decode_flow_gex(text)
    assert encode_fields(mine) == encode_fields(decode_flow_gex(text))


def test_rowless_matrix_checks() -> None:
    lean = rowless(decode_flow_gex(body()))
    assert lean.as_of_ms == decode_flow_gex(body()).as_of_ms
    assert strike_matrix(msgspec.structs.replace(lean, symbol="QQQ")) is None  # no matrix
    lean.strikes.append(StrikeRow(1.0))  # rows given to it since: the matrix is not theirs
    assert strike_matrix(lean) is None
    made = snap(strikes=chain(500.0, n=3))  # made in code: no matrix, so its rows stay
    assert rowless(made) is made
    no_rows = decode_flow_gex(body(strikes=[]))
    assert rowless(no_rows) is no_rows and strike_rows(no_rows) == []


def test_naive_as_of_is_utc_and_keeps_the_matrix() -> None:
    s = decode_flow_gex(body(as_of="2026-03-02T15:04:05"))
    assert s.as_of.utcoffset() is not None and strike_matrix(s) is not None


@pytest.mark.parametrize("text", [b"1e999", b"-1e400"])
def test_out_of_range_numbers_in_rows_are_refused(text: bytes) -> None:
    raw = body().replace(b'"call_oi":', b'"call_oi":' + text + b',"_x":', 1)
    with pytest.raises(PayloadError, match="malformed"):
        decode_flow_gex(raw)


def test_validate_still_names_non_finite_values_in_rows_made_in_code() -> None:
    rows = chain(500.0, n=5)
    bad = [*rows[:2], msgspec.structs.replace(rows[2], put_oi=math.nan), *rows[3:]]
    assert validate(snap(strikes=bad)) == ["strikes[2]: non-finite put_oi"]
    inf = [msgspec.structs.replace(rows[0], call_gex=math.inf), *rows[1:]]
    assert validate(snap(strikes=inf)) == ["strikes[0]: non-finite call_gex"]
    assert validate(snap(strikes=rows)) == []


def test_rows_matrix_of_no_rows() -> None:
    assert rows_matrix([]).shape == (len(STRIKE_FIELDS), 0)


value_st = st.none() | st.floats() | st.integers(-(2**63), 2**63).map(float)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(*[value_st] * len(STRIKE_FIELDS)).map(lambda t: StrikeRow(*t))))
def test_rows_matrix_holds_each_rows_value_bit_for_bit(rows: list[StrikeRow]) -> None:
    m = rows_matrix(rows)
    assert m.shape == (len(STRIKE_FIELDS), len(rows)) and m.flags.c_contiguous
    flat = [v for row in rows for v in msgspec.structs.astuple(row)]
    want = np.array(flat, dtype=np.float64).reshape(len(rows), len(STRIKE_FIELDS)).T
    assert m.tobytes() == want.tobytes()  # None as numpy's NaN, -0.0 and NaN payloads kept


finite_row = st.tuples(*[st.floats(allow_nan=False, allow_infinity=False)] * len(STRIKE_FIELDS))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(*[st.floats()] * len(STRIKE_FIELDS)), min_size=1, max_size=70), st.data())
def test_rows_matrix_with_a_few_nulls_anywhere_is_bit_for_bit_the_values(
    values: list[tuple[float, ...]], data: st.DataObject
) -> None:
    # up to a few nulls the matrix comes from the rows packed as msgpack (each null found and
    # padded), past that from the values one by one: the same doubles either way
    cells = range(len(values) * len(STRIKE_FIELDS))
    nulls = data.draw(st.sets(st.sampled_from(cells), max_size=12))
    flat: list[float | None] = [v for row in values for v in row]
    for i in nulls:
        flat[i] = None
    width = len(STRIKE_FIELDS)
    rows = [StrikeRow(*flat[i : i + width]) for i in range(0, len(flat), width)]  # type: ignore[arg-type]
    m = rows_matrix(rows)
    want = np.array(flat, dtype=np.float64).reshape(len(rows), width).T
    assert m.flags.c_contiguous and m.tobytes() == want.tobytes()


# doubles whose bytes are msgpack's tags (nil 0xc0, float64 0xcb, the row header 0x9a, the
# list headers 0xdc/0xdd): read at a wrong shift they would pass for a nil or a float
tag_bytes = st.sampled_from([0xC0, 0xCB, 0x9A, 0xDC, 0xDD, 0x00, 0xFF])
tag_double = st.lists(tag_bytes, min_size=8, max_size=8).map(
    lambda b: float(np.frombuffer(bytes(b), ">f8")[0])
)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(*[tag_double] * len(STRIKE_FIELDS)), min_size=1, max_size=20), st.data())
def test_rows_matrix_of_doubles_made_of_tag_bytes_is_bit_for_bit_the_values(
    values: list[tuple[float, ...]], data: st.DataObject
) -> None:
    # up to _NILS_MAX nulls (the packed path's search), each shifting what follows by 8 bytes,
    # and now and then an int (rows made in code), packed in 1 to 9 bytes: never read as a nil
    flat: list[float | int | None] = [v for row in values for v in row]
    cells = st.sampled_from(range(len(flat)))
    for i in data.draw(st.sets(cells, max_size=8)):
        flat[i] = None
    for i in data.draw(st.sets(cells, max_size=1)):
        flat[i] = data.draw(st.sampled_from([7, -3, 200, -200, 2**40]))
    width = len(STRIKE_FIELDS)
    rows = [StrikeRow(*flat[i : i + width]) for i in range(0, len(flat), width)]  # type: ignore[arg-type]
    want = np.array(flat, dtype=np.float64).reshape(len(rows), width).T
    assert rows_matrix(rows).tobytes() == want.tobytes()


wire_value = (
    st.floats(allow_nan=False, allow_infinity=False)
    | tag_double.filter(math.isfinite)
    | st.integers(-(2**53), 2**53)
)


@settings(max_examples=120, deadline=None)
@given(st.lists(st.tuples(*[wire_value] * len(STRIKE_FIELDS)), min_size=1, max_size=40), st.data())
def test_the_decoded_matrix_is_bit_for_bit_the_bodys_values(
    values: list[tuple[float | int, ...]], data: st.DataObject
) -> None:
    # decode_flow_gex reads its own rows without checking their tags (the struct's types make
    # every value a float or a null): the same doubles as the checked path and as numpy's
    # conversion of the body's values, JSON ints, -0.0, doubles made of tag bytes, nulls
    # anywhere but the strike (past _NILS_MAX of them the per-value path)
    width = len(STRIKE_FIELDS)
    flat: list[float | int | None] = [v for row in values for v in row]
    for i in range(0, len(flat), width):  # strictly increasing positive strikes
        flat[i] = float(i + 1)
    cells = [i for i in range(len(flat)) if i % width]
    for i in data.draw(st.sets(st.sampled_from(cells), max_size=12)):
        flat[i] = None
    raw = msgspec.json.decode(body())
    raw["strikes"] = [dict(zip(STRIKE_FIELDS, flat[i : i + width], strict=True))
                      for i in range(0, len(flat), width)]  # fmt: skip
    s = decode_flow_gex(msgspec.json.encode(raw))
    m = strike_matrix(s)
    want = np.array(flat, dtype=np.float64).reshape(len(values), width).T
    assert m is not None and m.flags.c_contiguous
    assert m.tobytes() == want.tobytes() == rows_matrix(s.strikes).tobytes()


def test_a_matrix_built_while_the_kept_buffer_is_held_or_in_another_thread_is_the_same() -> None:
    # the rows are packed into a buffer kept per thread; one still viewed (an exception's
    # frame holding a view) cannot be resized, and they are packed into a new one instead
    from gex_alertd import model

    raw = body()
    want = strike_matrix(decode_flow_gex(raw))
    assert want is not None
    with memoryview(model._kept.buf):
        with pytest.raises(BufferError):
            model._kept.buf.append(0)
        held = strike_matrix(decode_flow_gex(raw))
    elsewhere: list[np.ndarray | None] = []
    worker = threading.Thread(target=lambda: elsewhere.append(strike_matrix(decode_flow_gex(raw))))
    worker.start()
    worker.join()
    for m in (held, *elsewhere):
        assert m is not None and m.tobytes() == want.tobytes()
    assert rows_matrix(decode_flow_gex(raw).strikes).tobytes() == want.tobytes()


def test_the_kept_buffer_lets_a_huge_body_go() -> None:
    # a body of many rows (up to source.max_body_bytes) is packed once and not kept: msgspec
    # truncates the buffer without giving its memory back, which would hold it for good
    import sys

    from gex_alertd import model

    raw = msgspec.json.decode(body())
    row = raw["strikes"][0]
    raw["strikes"] = [{**row, "strike": float(k + 1)} for k in range(8000)]
    huge = decode_flow_gex(msgspec.json.encode(raw))
    m = strike_matrix(huge)
    assert m is not None and m.shape == (len(STRIKE_FIELDS), 8000)
    assert m.tobytes() == rows_matrix(huge.strikes).tobytes()
    assert sys.getsizeof(model._kept.buf) < 64 * 1024
    normal = strike_matrix(decode_flow_gex(body()))
    assert normal is not None and normal.shape == (len(STRIKE_FIELDS), 12)
    assert sys.getsizeof(model._kept.buf) < model._KEPT_MAX


@pytest.mark.parametrize("odd", [7, True, 2**63, "abcdefgh", b"12345678"])
def test_rows_matrix_of_rows_made_in_code_with_other_values(odd: object) -> None:
    # not a float: packed, it is not 9 bytes tagged 0xcb (or it is 9 bytes with another tag),
    # so these take the per-value path, which converts what numpy can
    rows = [StrikeRow(1.0, None), StrikeRow(2.0, odd), StrikeRow(3.0, 4.5)]  # type: ignore[arg-type]
    try:
        want = np.array([[1.0, None], [2.0, odd], [3.0, 4.5]], dtype=np.float64)
    except (TypeError, ValueError):
        with pytest.raises((TypeError, ValueError)):
            rows_matrix(rows)
        return
    assert rows_matrix(rows)[:2].tobytes() == np.ascontiguousarray(want.T).tobytes()


@pytest.mark.parametrize(
    ("value", "error"),
    [("abc", ValueError), ([1.0], ValueError), (10**400, OverflowError), (object(), TypeError)],
)
def test_rows_matrix_refuses_what_no_float64_holds(value: object, error: type) -> None:
    # only rows made in code can hold these; the codec takes its row path for them
    with pytest.raises(error):
        rows_matrix([StrikeRow(1.0), StrikeRow(2.0, value)])  # type: ignore[arg-type]  # on purpose


def test_as_of_ms_is_computed_once_per_snapshot() -> None:
    s = decode_flow_gex(body())
    assert s.as_of_ms == 1772463845250 and s.__dict__["as_of_ms"] == 1772463845250
    later = msgspec.structs.replace(s, as_of=s.as_of.replace(second=6))
    assert later.as_of_ms == 1772463846250
    # set on decode from the validation's own figure: the same for a naive (UTC) or offset as_of
    for text in ("2026-03-02T15:04:05.250", "2026-03-02T17:04:05.250+02:00"):
        d = decode_flow_gex(body(as_of=text))
        assert d.__dict__["as_of_ms"] == 1772463845250 == as_ms(d.as_of)
