"""rules.levels: walls (ties, window edge, nulls, sign as served), regime, flip distance."""

from __future__ import annotations

from typing import Any, cast

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gex_alertd import store
from gex_alertd.model import StrikeRow, decode_flow_gex
from gex_alertd.rules.columns import FIELDS, columns, from_block
from gex_alertd.rules.levels import (
    Levels,
    attach_levels,
    compute_levels,
    details,
    flip_distance_pct,
    gex_at,
    levels,
    levels_many,
    regime,
)
from tests.rules.factory import snap

Spec = list[tuple[float, float | None, float | None]]


def rows(*spec: tuple[float, float | None, float | None]) -> list[StrikeRow]:
    return [StrikeRow(strike=k, call_gex=c, put_gex=p) for k, c, p in spec]


CASES = [
    # (id, spot, rows (strike, call_gex, put_gex), within_pct, (call_wall, put_wall))
    ("largest each side", 500, [(495, 1, -9), (500, 5, -2), (505, 3, -1)], None, (500, 495)),
    ("put sign as served (positive)", 500, [(495, 1, 9), (505, 1, 2)], None, (495, 495)),
    ("call tie to the nearer strike", 500, [(490, 5, -2), (503, 5, -1)], None, (503, 490)),
    ("put tie to the nearer strike", 500, [(490, 2, -7), (499, 1, -7)], None, (490, 499)),
    ("equidistant tie to the lower", 500, [(495, 5, -7), (505, 5, -7)], None, (495, 495)),
    ("window excludes a far strike", 500, [(400, 99, -99), (501, 1, -1)], 5.0, (501, 501)),
    ("window edge is inside", 500, [(475, 9, -9), (500, 1, -1)], 5.0, (475, 475)),
    ("just past the edge is out", 500, [(474.5, 9, -9), (500, 1, -1)], 5.0, (500, 500)),
    ("nothing in the window", 500, [(400, 9, -9)], 5.0, (None, None)),
    ("nulls never a wall", 500, [(495, None, None), (500, 1, None)], None, (500, None)),
    ("no positive call gex", 500, [(495, 0, -1), (500, -3, 0)], None, (None, 495)),
    ("no strikes", 500, [], None, (None, None)),
]


@pytest.mark.parametrize(
    ("spot", "spec", "within", "want"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_walls_table(
    spot: float,
    spec: list[tuple[float, float | None, float | None]],
    within: float | None,
    want: tuple[float | None, float | None],
) -> None:
    s = snap(spot=spot, strikes=rows(*spec))
    assert compute_levels(columns(s), spot, within) == Levels(*want)
    # row order never matters
    r = snap(spot=spot, strikes=list(reversed(rows(*spec))))
    assert compute_levels(columns(r), spot, within) == Levels(*want)


def test_walls_worked_out_together_are_the_walls_one_by_one() -> None:
    # a commit batch works out its snapshots' walls at once (levels_many): every case without
    # a window, twice (same strike count: one batch) and in reverse row order, plus a snapshot
    # whose levels are known already; the same walls as levels() gives each, and kept as its
    spec = [(cast(float, c[1]), cast(Spec, c[2])) for c in CASES if c[3] is None]
    snaps = [snap(spot=spot, strikes=order(rows(*r))) for spot, r in spec for order in (list, _rev)]
    padded = [snap(spot=spot, strikes=_pad(rows(*r))) for spot, r in spec]  # one strike count
    known = snap(spot=500, strikes=rows((495, 1, -1)))
    attach_levels(known, Levels(1.0, 2.0))
    batch = [*snaps, *padded, known]
    want = [levels(snap(spot=s.underlying_price, strikes=s.strikes)) for s in batch[:-1]]
    got = levels_many(batch)
    assert got == [*want, Levels(1.0, 2.0)]
    assert [levels(s) for s in batch] == got  # cached on each snapshot


# few distinct values, so ties (also +0/-0 and a put at minus a call) are common; nulls too
gex_st = st.sampled_from([None, 0.0, -0.0, 1.0, -1.0, 2.0, -2.0, 7e8])
profile_st = st.tuples(
    st.sampled_from([99.5, 100.0, 101.0, 103.0]),  # spot: on a strike, between two, off the side
    st.lists(st.tuples(gex_st, gex_st), max_size=5),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(profile_st, min_size=1, max_size=8))
def test_walls_of_any_batch_are_the_walls_one_by_one(profiles: list[Any]) -> None:
    # strikes 98, 99, ... (spot between two of them or on one): mixed strike counts, empty
    # profiles, ties at equal distance on both sides of spot
    def build(spot: float, gex: list[Any]) -> Any:
        rows = [StrikeRow(98.0 + i, call_gex=c, put_gex=p) for i, (c, p) in enumerate(gex)]
        return snap(spot=spot, strikes=rows)

    want = [levels(build(*p)) for p in profiles]
    assert levels_many([build(*p) for p in profiles]) == want


def _rev(r: list[StrikeRow]) -> list[StrikeRow]:
    return list(reversed(r))


def _pad(r: list[StrikeRow]) -> list[StrikeRow]:
    # to 4 strikes with far, null rows: never a wall
    return [*r, *(StrikeRow(strike=1000.0 + i) for i in range(4 - len(r)))]


def test_levels_from_the_stored_block_equal_levels_from_the_rows() -> None:
    s = snap(spot=500, strikes=rows((495, 1e8, -9e8), (500, 5e8, -2e8), (505, 3e8, None)))
    decoded = decode_flow_gex(msgspec.json.encode(s))
    _, block = store.decode_fields_columns(store.encode_fields(decoded), FIELDS)
    view = from_block(block)
    assert np.array_equal(view.m, columns(s).m, equal_nan=True)
    assert compute_levels(view, 500) == levels(s) == Levels(500, 495)


@pytest.mark.parametrize(
    ("label", "want"),
    [("positive", "positive"), ("NEGATIVE", "negative"), ("flat", None), (None, None)],
)
def test_regime_is_the_served_label(label: str | None, want: str | None) -> None:
    s = msgspec.structs.replace(snap(net=-1e9), live_net_gex_label=label)
    assert regime(s) == want


def test_flip_distance() -> None:
    assert flip_distance_pct(snap(spot=500, flip=495)) == pytest.approx(1.0)
    assert flip_distance_pct(snap(spot=500, flip=505)) == pytest.approx(-1.0)
    assert flip_distance_pct(snap(flip=None)) is None
    assert flip_distance_pct(snap(flip=495, status="no_boundary")) is None


def test_details_and_gex_at() -> None:
    s = snap(spot=500, flip=490, strikes=rows((495, 1, -9), (500, 5, None)))
    assert details(s) == {
        "regime": "positive",
        "flip_distance_pct": pytest.approx(2.0),
        "call_wall": 500,
        "put_wall": 495,
    }
    cols = columns(s)
    assert gex_at(cols, 495, 1) == -9
    assert gex_at(cols, 500, 1) is None
    assert gex_at(cols, 510, 0) is None
    assert gex_at(cols, None, 0) is None
