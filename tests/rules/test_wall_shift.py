"""wall_shift: confirm, min_move_pct, ties, the window edge, undefined walls."""

from __future__ import annotations

import pytest

from gex_alertd.model import FlowGex, StrikeRow
from tests.rules.factory import snap
from tests.rules.helpers import make_rule, rule_problems, run

STRIKES = (490.0, 495.0, 500.0, 505.0, 510.0)


def walls(i: int, call: float | None, put: float | None = 490.0, spot: float = 500.0) -> FlowGex:
    """A snapshot whose call wall is `call` (1e9 there, 1e8 elsewhere; None: no call GEX)."""
    rows = [
        StrikeRow(
            strike=k,
            call_gex=None if call is None else (1e9 if k == call else 1e8),
            put_gex=None if put is None else (-1e9 if k == put else -1e8),
        )
        for k in STRIKES
    ]
    return snap(at=i, spot=spot, strikes=rows)


CASES = [
    # (id, rule kwargs, call walls per snapshot, fired snapshot indexes)
    ("confirmed move", {}, [500, 505, 505], [2]),
    ("first wall is the baseline", {}, [505, 505, 505], []),
    ("moves and back within confirm", {}, [500, 505, 500, 505, 500], []),
    ("moves on to a third strike restarts", {}, [500, 505, 510, 510], [3]),
    ("confirm 1 fires at once", {"confirm": 1}, [500, 505], [1]),
    ("confirm 3", {"confirm": 3}, [500, 505, 505, 505, 505], [3]),
    ("small move is noise", {"min_move_pct": 1.5}, [500, 505, 505, 505], []),
    ("small steps add up", {"min_move_pct": 1.5, "confirm": 1}, [500, 505, 510], [2]),
    ("undefined wall neither confirms nor breaks", {}, [500, 505, None, 505], [3]),
    ("undefined first then a wall", {}, [None, 500, 505, 505], [3]),
    ("moves twice, fires twice", {"confirm": 1}, [500, 505, 500], [1, 2]),
    ("put only ignores the call wall", {"wall": "put"}, [500, 505, 505], []),
]


@pytest.mark.parametrize(("kw", "seq", "want"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_wall_shift_table(kw: dict, seq: list, want: list[int]) -> None:
    rule = make_rule(type="wall_shift", wall=kw.pop("wall", "call"), **kw)
    assert [i for i, _ in run(rule, [walls(i, c) for i, c in enumerate(seq)])] == want


def test_details_and_both_walls_on_one_snapshot() -> None:
    rule = make_rule(type="wall_shift", wall="both", confirm=1)
    [(_, call), (_, put)] = run(rule, [walls(0, 500, 490), walls(1, 505, 495)])
    assert call.id != put.id
    d = call.details
    assert (d["wall"], d["from"], d["to"], d["direction"]) == ("call", 500, 505, "up")
    assert (d["gex_from"], d["gex_to"], d["spot"]) == (1e8, 1e9, 500)
    assert d["move_pct"] == pytest.approx(1.0)
    assert (put.details["from"], put.details["to"], put.details["gex_to"]) == (490, 495, -1e9)
    assert d["put_wall"] == 495 and d["regime"] == "positive"  # the levels, as every alert


def test_ties_go_to_the_strike_nearer_spot() -> None:
    def tied(i: int, spot: float) -> FlowGex:
        rows = [StrikeRow(strike=k, call_gex=1e9 if k in (490, 510) else 1e8) for k in STRIKES]
        return snap(at=i, spot=spot, strikes=rows)

    rule = make_rule(type="wall_shift", wall="call", confirm=1)
    [(_, ev)] = run(rule, [tied(0, 498), tied(1, 502)])
    assert (ev.details["from"], ev.details["to"]) == (490, 510)


def test_window_edge() -> None:
    # within 2 % of spot 500 is 490..510: the edge strike counts, a strike past it does not
    rule = make_rule(type="wall_shift", wall="call", confirm=1, within_pct=2)
    far = [StrikeRow(strike=k, call_gex={511: 1e9, 505: 2e8}.get(k, 1e8)) for k in (500, 505, 511)]
    edge = [StrikeRow(strike=k, call_gex=1e9 if k == 510 else 1e8) for k in (500, 510, 511)]
    near = [StrikeRow(strike=k, call_gex=2e8 if k == 505 else 1e8) for k in (500, 505, 511)]
    events = run(rule, [snap(strikes=near), snap(at=1, strikes=far), snap(at=2, strikes=edge)])
    # the far strike is outside the window: the wall stays 505 (the largest inside), then 510
    assert [(i, e.details["to"]) for i, e in events] == [(2, 510)]


def test_check_names_the_fields() -> None:
    got = rule_problems(type="wall_shift", wall="side", confirm=0, min_move_pct=-1, within_pct=0)
    assert any(p.startswith("rule.wall:") for p in got), got
    got = rule_problems(type="wall_shift", confirm=0, min_move_pct=-1, within_pct=0)
    assert {p.split(":")[0] for p in got} == {
        "rule.confirm",
        "rule.min_move_pct",
        "rule.within_pct",
    }, got
