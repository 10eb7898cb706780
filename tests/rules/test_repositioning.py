"""repositioning: live vs the day's settled profile (missing, yesterday's, window edge, ties)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from gex_alertd.model import FlowGex, StrikeRow
from gex_alertd.rules.repositioning import Settled, attach_settled, exchange_day
from tests.rules.factory import T0, snap
from tests.rules.helpers import make_rule, rule_problems, run

STRIKES = (490.0, 495.0, 500.0, 505.0, 510.0)
BASE = [1e8] * 5  # settled call GEX per strike; put GEX is its negative
SETTLED = Settled(exchange_day(snap()), 0, list(STRIKES), BASE, [-x for x in BASE])
YESTERDAY = Settled("2026-05-10", 0, list(STRIKES), BASE, [-x for x in BASE])


def live(i: int, calls: list[float], settled: Settled | None = SETTLED) -> FlowGex:
    rows = [
        StrikeRow(strike=k, call_gex=c, put_gex=-b)
        for k, c, b in zip(STRIKES, calls, BASE, strict=True)
    ]
    s = snap(at=i, strikes=rows)
    attach_settled(s, settled)
    return s


SAME = BASE
# settled total = 10e8; +3e8 at one strike is 30 %
UP30 = [1e8, 1e8, 4e8, 1e8, 1e8]
UP5 = [1e8, 1e8, 1.5e8, 1e8, 1e8]
EDGE30 = [4e8, 1e8, 1e8, 1e8, 1e8]  # at 490: 2 % from spot 500

CASES = [
    # (id, rule kwargs, [(calls, settled)], fired indexes)
    ("drift fires", {"min_pct": 20}, [(SAME, SETTLED), (UP30, SETTLED)], [1]),
    (
        "stays over fires once",
        {"min_pct": 20},
        [(SAME, SETTLED), (UP30, SETTLED), (UP30, SETTLED)],
        [1],
    ),
    ("under the threshold", {"min_pct": 20}, [(SAME, SETTLED), (UP5, SETTLED)], []),
    (
        "back under re-arms",
        {"min_pct": 20},
        [(SAME, SETTLED), (UP30, SETTLED), (SAME, SETTLED), (UP30, SETTLED)],
        [1, 3],
    ),
    ("settled missing: nothing", {"min_pct": 20}, [(SAME, None), (UP30, None)], []),
    (
        "settled from yesterday: nothing",
        {"min_pct": 20},
        [(SAME, YESTERDAY), (UP30, YESTERDAY)],
        [],
    ),
    (
        "missing neither fires nor resets",
        {"min_pct": 20},
        [(SAME, SETTLED), (UP30, SETTLED), (SAME, None), (UP30, SETTLED)],
        [1],
    ),
    (
        "one strike over min_strike_gex",
        {"min_strike_gex": 2e8},
        [(SAME, SETTLED), (UP30, SETTLED)],
        [1],
    ),
    (
        "one strike under min_strike_gex",
        {"min_strike_gex": 2e8},
        [(SAME, SETTLED), (UP5, SETTLED)],
        [],
    ),
    (
        "window edge is inside",
        {"min_pct": 20, "within_pct": 2.0},
        [(SAME, SETTLED), (EDGE30, SETTLED)],
        [1],
    ),
    (
        "past the window is out",
        {"min_pct": 20, "within_pct": 1.9},
        [(SAME, SETTLED), (EDGE30, SETTLED)],
        [],
    ),
]


@pytest.mark.parametrize(("kw", "seq", "want"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_repositioning_table(kw: dict, seq: list, want: list[int]) -> None:
    rule = make_rule(type="repositioning", **kw)
    snaps = [live(i, calls, settled) for i, (calls, settled) in enumerate(seq)]
    assert [i for i, _ in run(rule, snaps)] == want


def test_a_new_day_starts_unrepositioned() -> None:
    rule = make_rule(type="repositioning", min_pct=20)
    day1 = [live(0, SAME), live(1, UP30)]
    next_day = T0 + timedelta(days=1)
    settled2 = Settled(exchange_day(snap(at=next_day)), 0, list(STRIKES), UP30, [-x for x in BASE])
    s = snap(at=next_day + timedelta(seconds=15), strikes=live(0, UP30).strikes)
    attach_settled(s, settled2)
    later = snap(at=next_day + timedelta(seconds=30), strikes=live(0, SAME).strikes)
    attach_settled(later, settled2)  # SAME vs a settled UP30: 30 % off again
    assert [i for i, _ in run(rule, [*day1, s, later])] == [1, 3]


def test_details_list_the_top_strikes_and_ties_keep_strike_order() -> None:
    rule = make_rule(type="repositioning", min_pct=20, top=2)
    # +1e8 at 495, 505 and 510: a three-way tie; the top two by change keep strike order
    [(_, ev)] = run(rule, [live(0, SAME), live(1, [1e8, 2e8, 1e8, 2e8, 2e8])])
    top = ev.details["top_strikes"]
    assert [t["strike"] for t in top] == [495.0, 505.0]
    assert top[0] == {
        "strike": 495.0,
        "settled_call_gex": 1e8,
        "live_call_gex": 2e8,
        "settled_put_gex": -1e8,
        "live_put_gex": -1e8,
        "change": 1e8,
    }
    assert ev.details["changed_pct"] == pytest.approx(30.0)
    assert ev.details["settled_gex"] == 10e8
    assert ev.details["call_wall"] == 495.0  # the levels: 2e8 at 495, 505, 510; equidistant: lower
    # exactly min_pct (20 %) is not over it
    assert run(rule, [live(0, SAME), live(1, [1e8, 2e8, 1e8, 2e8, 1e8])]) == []


def test_check_names_the_fields() -> None:
    got = rule_problems(type="repositioning")
    assert [p.split(":")[0] for p in got] == ["rule.min_pct"], got
    got = rule_problems(type="repositioning", min_pct=0, min_strike_gex=-1, within_pct=0, top=0)
    assert {p.split(":")[0] for p in got} == {
        "rule.min_pct",
        "rule.min_strike_gex",
        "rule.within_pct",
        "rule.top",
    }, got
