"""level_proximity: entering and leaving the zone, hysteresis, the zone's edge, missing levels."""

from __future__ import annotations

import pytest

from gex_alertd.model import StrikeRow
from tests.rules.factory import snap
from tests.rules.helpers import make_rule, rule_problems, run

# spot 500, flip 495: distance 1 %. (spot, flip) per snapshot
CASES = [
    # (id, rule kwargs, [(spot, flip)], [(index, status)])
    ("enters", {}, [(510, 495), (497, 495)], [(1, "firing")]),
    ("starts inside: baseline", {}, [(497, 495), (496, 495)], []),
    ("edge is inside", {}, [(510, 495), (500, 495)], [(1, "firing")]),  # exactly 1 %
    ("just outside the edge", {}, [(510, 495), (500.1, 495)], []),
    ("exit without on_exit is silent", {}, [(510, 495), (497, 495), (510, 495)], [(1, "firing")]),
    (
        "exit with on_exit resolves",
        {"on_exit": True},
        [(510, 495), (497, 495), (510, 495)],
        [(1, "firing"), (2, "resolved")],
    ),
    (
        "starts inside, exit resolves nothing",
        {"on_exit": True},
        [(497, 495), (510, 495), (497, 495)],
        [(2, "firing")],
    ),
    (
        "jitter at the edge inside the band",
        {"band_pct": 0.5, "on_exit": True},
        [(510, 495), (500, 495), (501, 495), (500, 495), (501, 495)],
        [(1, "firing")],
    ),
    (
        "past the band leaves, then re-enters",
        {"band_pct": 0.5, "on_exit": True},
        [(510, 495), (500, 495), (503, 495), (500, 495)],
        [(1, "firing"), (2, "resolved"), (3, "firing")],
    ),
    (
        "no flip neither enters nor leaves",
        {"on_exit": True},
        [(510, 495), (497, 495), (510, None), (497, 495)],
        [(1, "firing")],
    ),
    ("level moves next to spot", {}, [(500, 480), (500, 498)], [(1, "firing")]),
]


@pytest.mark.parametrize(("kw", "seq", "want"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_flip_zone_table(kw: dict, seq: list, want: list) -> None:
    rule = make_rule(type="level_proximity", level="flip", within_pct=1.0, **kw)
    snaps = [snap(at=i, spot=s, flip=f) for i, (s, f) in enumerate(seq)]
    assert [(i, e.status) for i, e in run(rule, snaps)] == want


def test_wall_level_and_details() -> None:
    rows = [StrikeRow(strike=k, put_gex=-9e8 if k == 480 else -1e8) for k in (470, 480, 520)]
    rule = make_rule(type="level_proximity", level="put_wall", within_pct=0.5, on_exit=True)
    snaps = [snap(at=i, spot=s, strikes=rows) for i, s in enumerate((500, 481, 470))]
    [(i, enter), (j, left)] = run(rule, snaps)
    assert (i, j) == (1, 2)
    assert enter.details["zone"] == "entered" and enter.details["level_value"] == 480
    assert enter.details["side"] == "above" and enter.details["put_wall"] == 480
    assert left.status == "resolved" and left.details["zone"] == "left"
    assert left.id != enter.id


def test_no_wall_is_no_level() -> None:
    rule = make_rule(type="level_proximity", level="call_wall", within_pct=1.0)
    assert run(rule, [snap(at=i, spot=500 + i) for i in range(3)]) == []


def test_check_names_the_fields() -> None:
    got = rule_problems(type="level_proximity", level="wall", within_pct=0)
    assert any(p.startswith("rule.level:") for p in got), got
    got = rule_problems(type="level_proximity", level="flip", within_pct=0, band_pct=-1)
    assert {p.split(":")[0] for p in got} == {"rule.within_pct", "rule.band_pct"}, got
    assert rule_problems(type="level_proximity", level="flip")[0].startswith("rule.within_pct")
