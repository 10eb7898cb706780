from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gex_alertd.model import FlowGex
from tests.rules.factory import row, snap
from tests.rules.helpers import fired_at, make_rule, rule_problems, run


def chain(**oi: tuple[float | None, float | None]) -> list:
    """chain(s500=(call_oi, put_oi), ...) -> rows."""
    return [row(float(k[1:]), c, p) for k, (c, p) in oi.items()]


def poll(*chains: list, spot: float = 500.0) -> list:
    return [snap(at=i, spot=spot, strikes=c) for i, c in enumerate(chains)]


BASE = {"s495": (1000.0, 1000.0), "s500": (1000.0, 1000.0), "s505": (1000.0, 1000.0)}

CASES = [
    # (id, rule kwargs, chains, expected)
    ("jump on a call", {"min_contracts": 500}, [BASE, {**BASE, "s500": (1600.0, 1000.0)}], [1]),
    ("below min_contracts", {"min_contracts": 500}, [BASE, {**BASE, "s500": (1400.0, 1000.0)}], []),
    (
        "exactly min_contracts fires",
        {"min_contracts": 500},
        [BASE, {**BASE, "s500": (1500.0, 1000.0)}],
        [1],
    ),
    ("a drop counts too", {"min_contracts": 500}, [BASE, {**BASE, "s500": (400.0, 1000.0)}], [1]),
    (
        "side put ignores calls",
        {"min_contracts": 500, "side": "put"},
        [BASE, {**BASE, "s500": (1600.0, 1000.0)}],
        [],
    ),
    (
        "side put sees puts",
        {"min_contracts": 500, "side": "put"},
        [BASE, {**BASE, "s500": (1000.0, 1600.0)}],
        [1],
    ),
    ("min_pct", {"min_pct": 50}, [BASE, {**BASE, "s500": (1000.0, 1500.0)}], [1]),
    ("min_pct not reached", {"min_pct": 50}, [BASE, {**BASE, "s500": (1000.0, 1400.0)}], []),
    (
        "both thresholds must hold",
        {"min_pct": 50, "min_contracts": 800},
        [BASE, {**BASE, "s500": (1000.0, 1600.0)}],
        [],
    ),
    (
        "strike appears: not compared",
        {"min_contracts": 500},
        [BASE, {**BASE, "s510": (9000.0, 9000.0)}],
        [],
    ),
    (
        "strike disappears: not compared",
        {"min_contracts": 500},
        [BASE, {"s495": (1000.0, 1000.0)}],
        [],
    ),
    (
        "strike disappears and comes back",
        {"min_contracts": 500},
        [BASE, {"s495": (1000.0, 1000.0)}, {**BASE, "s500": (5000.0, 1000.0)}],
        [],
    ),
    (
        "null OI not compared",
        {"min_contracts": 500},
        [BASE, {**BASE, "s500": (None, 1000.0)}, {**BASE, "s500": (5000.0, 1000.0)}],
        [],
    ),
    (
        "within_pct excludes far strikes",
        {"min_contracts": 500, "within_pct": 0.5},
        [BASE, {**BASE, "s505": (5000.0, 1000.0)}],
        [],
    ),
    (
        "within_pct keeps near strikes",  # its edge too: 505 is 1% above 500
        {"min_contracts": 500, "within_pct": 1.0},
        [BASE, {**BASE, "s505": (5000.0, 1000.0)}],
        [1],
    ),
    # without min_contracts the window applies before the threshold, not after: same result
    (
        "within_pct excludes far strikes (min_pct alone)",
        {"min_pct": 50, "within_pct": 0.5},
        [BASE, {**BASE, "s505": (5000.0, 1000.0)}],
        [],
    ),
    (
        "within_pct keeps near strikes (min_pct alone)",
        {"min_pct": 50, "within_pct": 1.0},
        [BASE, {**BASE, "s505": (5000.0, 1000.0)}],
        [1],
    ),
    (
        "strike set shifts with spot: matched by strike",
        {"min_contracts": 500},
        [BASE, {"s500": (1000.0, 1000.0), "s505": (3000.0, 1000.0), "s510": (9.0, 9.0)}],
        [1],
    ),
    (
        "strike set shifts, side put sees puts",
        {"min_contracts": 500, "side": "put"},
        [BASE, {"s500": (1000.0, 1000.0), "s505": (1000.0, 3000.0), "s510": (9.0, 9.0)}],
        [1],
    ),
    (
        "strike set shifts, side put ignores calls",
        {"min_contracts": 500, "side": "put"},
        [BASE, {"s500": (1000.0, 1000.0), "s505": (3000.0, 1000.0), "s510": (9.0, 9.0)}],
        [],
    ),
    (
        "same count, a strike in the middle replaced",
        {"min_contracts": 500},
        [BASE, {"s495": (1000.0, 1000.0), "s501": (9000.0, 1000.0), "s505": (1000.0, 1000.0)}],
        [],
    ),
    ("no change no alert", {"min_contracts": 1}, [BASE, BASE, BASE], []),
    (
        "every poll compares to the previous",
        {"min_contracts": 500},
        [BASE, {**BASE, "s500": (1600.0, 1000.0)}, {**BASE, "s500": (1600.0, 1000.0)}],
        [1],
    ),
]


@pytest.mark.parametrize(
    ("kw", "chains", "want"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_oi_change_poll_table(kw: dict, chains: list, want: list) -> None:
    rule = make_rule(type="oi_change", basis="poll", **kw)
    assert fired_at(rule, poll(*[chain(**c) for c in chains])) == want


def test_oi_change_one_alert_lists_strikes() -> None:
    rule = make_rule(type="oi_change", min_contracts=500)
    after = {**BASE, "s495": (1000.0, 2000.0), "s505": (3000.0, 1000.0)}
    [(_, ev)] = run(rule, poll(chain(**BASE), chain(**after)))
    assert [(s["strike"], s["side"], s["before"], s["after"]) for s in ev.details["strikes"]] == [
        (495.0, "put", 1000.0, 2000.0),
        (505.0, "call", 1000.0, 3000.0),
    ]
    assert (
        ev.details["strikes"][1]["change"] == 2000.0
        and ev.details["strikes"][1]["change_pct"] == 200.0
    )
    assert "2 strikes" in ev.summary and "call 505" in ev.summary
    assert ev.details["previous_as_of"] == "2026-05-11T14:00:00.000Z"


def test_oi_change_alert_id_depends_on_strikes() -> None:
    rule = make_rule(type="oi_change", min_contracts=500)
    a = run(rule, poll(chain(**BASE), chain(**{**BASE, "s495": (2000.0, 1000.0)})))
    b = run(rule, poll(chain(**BASE), chain(**{**BASE, "s505": (2000.0, 1000.0)})))
    assert a[0][1].id != b[0][1].id


def day_snap(at: datetime, oi: float, change: float | None, strike: float = 500.0) -> FlowGex:
    return snap(at=at, strikes=[row(strike, oi, 1000.0, call_oi_change=change, put_oi_change=0.0)])


D1 = [datetime(2026, 5, 11, h, m, tzinfo=UTC) for h, m in ((14, 0), (14, 1), (14, 2), (14, 3))]
D2 = datetime(2026, 5, 12, 14, 0, tzinfo=UTC)


def test_oi_change_day_basis_once_per_strike_per_day() -> None:
    rule = make_rule(type="oi_change", basis="day", min_contracts=500, side="call")
    snaps = [
        day_snap(D1[0], 1100, 100),  # baseline, below
        day_snap(D1[1], 1600, 600),  # crosses: fires
        day_snap(D1[2], 1700, 700),  # still above: once per day
        day_snap(D1[3], 1200, 200),  # back below, no re-fire the same day
        day_snap(D2, 1800, 800),  # a new exchange day: fires again
    ]
    got = run(rule, snaps)
    assert [i for i, _ in got] == [1, 4]
    assert (
        got[0][1].details["strikes"][0]["before"] == 1000
        and got[0][1].details["exchange_day"] == "2026-05-11"
    )


def test_oi_change_day_basis_first_snapshot_is_baseline() -> None:
    rule = make_rule(type="oi_change", basis="day", min_contracts=500, side="call")
    assert fired_at(rule, [day_snap(D1[0], 1600, 600), day_snap(D1[1], 1700, 700)]) == []


def test_oi_change_day_basis_null_change_is_skipped() -> None:
    rule = make_rule(type="oi_change", basis="day", min_contracts=500, side="call")
    snaps = [day_snap(D1[0], 1000, 0), day_snap(D1[1], 1600, None), day_snap(D1[2], 1600, 600)]
    assert fired_at(rule, snaps) == [2]


def test_oi_change_day_basis_day_is_new_york() -> None:
    # 02:00 UTC on the 12th is still the 11th in New York: the same exchange day
    rule = make_rule(type="oi_change", basis="day", min_contracts=500, side="call")
    late = datetime(2026, 5, 12, 2, 0, tzinfo=UTC)
    snaps = [day_snap(D1[0], 1000, 0), day_snap(D1[1], 1600, 600), day_snap(late, 1600, 600)]
    assert fired_at(rule, snaps) == [1]


@pytest.mark.parametrize(
    ("kw", "fragment"),
    [
        ({}, "rule.min_contracts: set min_contracts and/or min_pct"),
        ({"min_contracts": 0}, "rule.min_contracts: must be > 0"),
        ({"min_pct": -1}, "rule.min_pct: must be > 0"),
        ({"min_pct": 5, "within_pct": 0}, "rule.within_pct: must be > 0"),
        ({"min_pct": 5, "basis": "hour"}, "rule.basis: expected one of poll, day"),
        ({"min_pct": 5, "side": "calls"}, "rule.side: expected one of call, put, both"),
    ],
)
def test_oi_change_problems(kw: dict, fragment: str) -> None:
    problems = rule_problems(type="oi_change", **kw)
    assert any(fragment in p for p in problems), problems
