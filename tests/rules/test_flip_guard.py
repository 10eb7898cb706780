"""flip_guard: a flip too far from spot, or none for longer than `for`; firing and resolved."""

from __future__ import annotations

import pytest

from gex_alertd.rules.engine import Engine
from tests.rules.factory import snap
from tests.rules.helpers import make_rule, rule_problems, run

OK, FAR, NONE, WITHHELD = 495.0, 300.0, None, "withheld"

CASES = [
    # (id, rule kwargs, flips per snapshot (15 s apart), [(index, status, reason)])
    ("far fires", {"max_distance_pct": 10}, [OK, FAR], [(1, "firing", "far")]),
    (
        "far then back resolves",
        {"max_distance_pct": 10},
        [OK, FAR, FAR, OK],
        [(1, "firing", "far"), (3, "resolved", "far")],
    ),
    ("no max_distance: far is fine", {}, [OK, FAR], []),
    ("starts bad: baseline, recovery silent", {"max_distance_pct": 10}, [FAR, FAR, OK], []),
    ("exactly at max is not far", {"max_distance_pct": 1.0}, [OK, 505.0], []),  # 1 % of 500
    ("missing shorter than for", {"for": "1m"}, [OK, NONE, NONE, NONE, OK], []),
    (
        "missing for long enough",
        {"for": "30s"},
        [OK, NONE, NONE, NONE, OK],
        [(3, "firing", "unavailable"), (4, "resolved", "unavailable")],
    ),
    (
        "withheld status counts as missing",
        {"for": "15s"},
        [OK, WITHHELD, WITHHELD],
        [(2, "firing", "unavailable")],
    ),
    ("a flip back resets the clock", {"for": "30s"}, [OK, NONE, NONE, OK, NONE, NONE], []),
    ("for 0 fires at once", {"for": 0}, [OK, NONE], [(1, "firing", "unavailable")]),
    (
        "far then missing is one problem",
        {"max_distance_pct": 10, "for": 0},
        [OK, FAR, NONE, OK],
        [(1, "firing", "far"), (3, "resolved", "far")],
    ),
    (
        "far then missing before for is still one problem",
        {"max_distance_pct": 10},  # for: 5m, far longer than the two missing snapshots
        [OK, FAR, NONE, NONE, OK],
        [(1, "firing", "far"), (4, "resolved", "far")],
    ),
]


def _snap(i: int, flip: float | str | None):
    if flip == WITHHELD:
        return snap(at=i, spot=500, flip=490, status="no_boundary")
    return snap(at=i, spot=500, flip=flip)  # type: ignore[arg-type]  # a float or None here


@pytest.mark.parametrize(("kw", "seq", "want"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_flip_guard_table(kw: dict, seq: list, want: list) -> None:
    rule = make_rule(type="flip_guard", **kw)
    got = run(rule, [_snap(i, f) for i, f in enumerate(seq)])
    assert [(i, e.status, e.details["reason"]) for i, e in got] == want


def test_defaults_and_ids() -> None:
    rule = make_rule(type="flip_guard", max_distance_pct=10)
    assert rule.severity == "warning" and rule.for_ == 300  # type: ignore[attr-defined]
    [(_, fire), (_, done)] = run(rule, [_snap(0, OK), _snap(1, FAR), _snap(2, OK)])
    assert fire.id != done.id and fire.details["distance_pct"] == pytest.approx(40.0)
    assert "flip" in fire.summary and done.summary


def test_a_reload_that_lengthens_for_keeps_the_outage_open() -> None:
    # the state survives a reload (it is keyed by rule name): an outage that fired under
    # `for: 30s` is not "back to normal" under `for: 5m` while the flip is still missing
    slots: dict = {}
    fired = []
    seq = [(30, [OK, NONE, NONE, NONE]), (300, [NONE, NONE, OK])]
    i = 0
    for for_s, flips in seq:
        engine = Engine([make_rule(type="flip_guard", **{"for": for_s})])
        for flip in flips:
            outcome = engine.evaluate(slots, _snap(i, flip), None, None)
            slots = outcome.slots
            fired += [(i, em.event.status) for em in outcome.emitted]
            i += 1
    assert fired == [(3, "firing"), (6, "resolved")]


def test_check_names_the_fields() -> None:
    got = rule_problems(type="flip_guard", **{"for": "soon"})
    assert [p.split(":")[0] for p in got] == ["rule.for"], got
    got = rule_problems(type="flip_guard", max_distance_pct=100)
    assert [p.split(":")[0] for p in got] == ["rule.max_distance_pct"], got
