from __future__ import annotations

import pytest

from tests.rules.factory import snap
from tests.rules.helpers import fired_at, make_rule, rule_problems, run

CASES = [
    # (id, field, above, below, [(spot, net, flip)], expected)
    ("price above", "underlying_price", 510, None, [(505, 1, 500), (511, 1, 500)], [1]),
    (
        "price exactly at level is not above",
        "underlying_price",
        510,
        None,
        [(505, 1, 500), (510, 1, 500)],
        [],
    ),
    (
        "from exactly at level up",
        "underlying_price",
        510,
        None,
        [(505, 1, 500), (510, 1, 500), (511, 1, 500)],
        [2],
    ),
    ("price below", "underlying_price", None, 490, [(495, 1, 500), (489, 1, 500)], [1]),
    ("first above never fires", "underlying_price", 510, None, [(515, 1, 500)], []),
    (
        "stays above fires once",
        "underlying_price",
        510,
        None,
        [(505, 1, 500), (511, 1, 500), (512, 1, 500)],
        [1],
    ),
    (
        "back and forth",
        "underlying_price",
        510,
        None,
        [(505, 1, 500), (511, 1, 500), (509, 1, 500), (511, 1, 500)],
        [1, 3],
    ),
    (
        "both levels",
        "underlying_price",
        510,
        490,
        [(500, 1, 500), (511, 1, 500), (489, 1, 500)],
        [1, 2],
    ),
    ("net gex below", "live_net_gex", None, -1e9, [(500, 0, 500), (500, -2e9, 500)], [1]),
    ("flip distance above", "flip_distance_pct", 1.0, None, [(500, 1, 499), (500, 1, 490)], [1]),
    (
        "null flip neither fires nor resets",
        "flip_distance_pct",
        1.0,
        None,
        [(500, 1, 499), (500, 1, None), (500, 1, 499)],
        [],
    ),
    (
        "null flip then across",
        "flip_distance_pct",
        1.0,
        None,
        [(500, 1, 499), (500, 1, None), (500, 1, 490)],
        [2],
    ),
]


@pytest.mark.parametrize(
    ("field", "above", "below", "points", "want"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_threshold_table(
    field: str, above: float | None, below: float | None, points: list, want: list
) -> None:
    kw = {k: v for k, v in (("above", above), ("below", below)) if v is not None}
    rule = make_rule(type="threshold", field=field, **kw)
    snaps = [snap(at=i, spot=s, net=n, flip=f) for i, (s, n, f) in enumerate(points)]
    assert fired_at(rule, snaps) == want


def test_threshold_details() -> None:
    rule = make_rule(type="threshold", field="underlying_price", above=510)
    [(_, ev)] = run(rule, [snap(at=0, spot=505), snap(at=1, spot=512)])
    assert ev.details["direction"] == "above" and ev.details["level"] == 510
    assert ev.details["value"] == 512 and ev.details["previous_value"] == 505


@pytest.mark.parametrize(
    ("kw", "fragment"),
    [
        (
            {"field": "spot"},
            "rule.field: expected one of live_net_gex, underlying_price, flip_distance_pct",
        ),
        ({"field": "underlying_price"}, "rule.above: set above and/or below"),
        ({"field": "underlying_price", "below": 0}, "rule.below: the price is always > 0"),
        (
            {"field": "flip_distance_pct", "above": 100},
            "rule.above: the flip distance is always < 100",
        ),
        ({"above": 1}, "rule.field: missing required key"),
    ],
)
def test_threshold_problems(kw: dict, fragment: str) -> None:
    problems = rule_problems(type="threshold", **kw)
    assert any(fragment in p for p in problems), problems


def test_threshold_band_between_levels() -> None:
    rule = make_rule(type="threshold", field="underlying_price", above=510, below=490)
    got = run(
        rule,
        [snap(at=0, spot=500), snap(at=1, spot=520), snap(at=2, spot=480), snap(at=3, spot=500)],
    )
    assert [(i, e.details["direction"]) for i, e in got] == [(1, "above"), (2, "below")]
    assert got[0][1].id != got[1][1].id
