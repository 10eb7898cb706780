from __future__ import annotations

import pytest

from tests.rules.factory import snap
from tests.rules.helpers import fired_at, make_rule, rule_problems, run

AV, NB = "available", "no_boundary"


def seq(*points: tuple[float, float | None] | tuple[float, float | None, str]) -> list:
    out = []
    for i, p in enumerate(points):
        spot, flip = p[0], p[1]
        status = p[2] if len(p) > 2 else AV
        out.append(snap(at=i, spot=spot, flip=flip, status=status))
    return out


CASES = [
    # (id, direction, band_pct, points, expected indexes that fire)
    ("cross up", "any", 0.0, [(99, 100), (101, 100)], [1]),
    ("cross down", "any", 0.0, [(101, 100), (99, 100)], [1]),
    ("up only ignores down", "up", 0.0, [(101, 100), (99, 100), (101, 100)], [2]),
    ("down only ignores up", "down", 0.0, [(99, 100), (101, 100), (99, 100)], [2]),
    ("first snapshot never fires", "any", 0.0, [(101, 100)], []),
    ("no change no alert", "any", 0.0, [(101, 100), (102, 100), (103, 101)], []),
    ("exactly on the flip is no side", "any", 0.0, [(99, 100), (100, 100), (99, 100)], []),
    ("on the flip then across", "any", 0.0, [(99, 100), (100, 100), (101, 100)], [2]),
    # band 0.5 %: |spot - flip| / spot must exceed 0.5 %
    ("inside the band does not count", "any", 0.5, [(99, 100), (100.3, 100), (99.9, 100)], []),
    ("outside the band counts", "any", 0.5, [(99, 100), (100.3, 100), (100.6, 100)], [2]),
    ("band edge is inside", "any", 1.0, [(100, 102), (100, 99), (100, 98.9)], [2]),
    ("band wiggle fires once", "any", 0.5, [(99, 100), (101, 100), (100.2, 100), (101, 100)], [1]),
    ("null flip neither fires nor resets", "any", 0.0, [(99, 100), (101, None), (99, 100)], []),
    ("null flip then back across", "any", 0.0, [(99, 100), (101, None), (101, 100)], [2]),
    ("withheld flip is no flip", "any", 0.0, [(99, 100), (101, 100, NB), (99, 100)], []),
    ("withheld then across", "any", 0.0, [(99, 100), (101, 100, NB), (101, 100)], [2]),
    ("unknown status is not available", "any", 0.0, [(99, 100), (101, 100, "new_reason")], []),
    ("null status means available", "any", 0.0, [(99, 100), (101, 100, None)], [1]),
    ("first with null flip then sides", "any", 0.0, [(99, None), (99, 100), (101, 100)], [2]),
    ("flip moves across spot", "any", 0.0, [(100, 99), (100, 101)], [1]),
]


@pytest.mark.parametrize(
    ("direction", "band", "points", "want"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_flip_cross_table(direction: str, band: float, points: list, want: list[int]) -> None:
    rule = make_rule(type="flip_cross", direction=direction, band_pct=band)
    assert fired_at(rule, seq(*points)) == want


def test_flip_cross_details() -> None:
    rule = make_rule(type="flip_cross", name="spy-flip", severity="critical", channels=["tty"])
    [(_, ev)] = run(rule, seq((99, 100), (101, 100.5)))
    assert ev.type == "flip_cross" and ev.rule == "spy-flip" and ev.severity == "critical"
    assert ev.details["direction"] == "up"
    assert ev.details["previous_flip"] == 100 and ev.details["flip"] == 100.5
    assert ev.details["previous_spot"] == 99 and ev.details["spot"] == 101
    assert "crossed above" in ev.summary and "SPY" in ev.summary
    assert ev.as_of == ev.fired_at == "2026-05-11T14:00:15.000Z"


@pytest.mark.parametrize(
    ("kw", "fragment"),
    [
        ({"direction": "sideways"}, "rule.direction: expected one of up, down, any"),
        ({"band_pct": -1}, "rule.band_pct: must be >= 0"),
        ({"band_pct": 150}, "rule.band_pct: must be >= 0 and < 100"),
        ({"symbols": []}, "rule.symbols: empty list"),
        ({"cooldown": "ten minutes"}, "rule.cooldown: expected a duration"),
        ({"severity": "loud"}, "rule.severity: expected one of info, warning, critical"),
        ({"typo": 1}, "rule.typo: unknown key"),
    ],
)
def test_flip_cross_problems(kw: dict, fragment: str) -> None:
    problems = rule_problems(type="flip_cross", **kw)
    assert any(fragment in p for p in problems), problems
