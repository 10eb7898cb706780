"""`gex-alertd check` names the path of every bad field of the level rules, all at once."""

from __future__ import annotations

from pathlib import Path

from tests.hostile.support_config import assert_check_refuses

BAD = """
channels: {tty: {type: console}}
rules:
  - {name: w, type: wall_shift, wall: middle, channels: [tty]}
  - {name: w2, type: wall_shift, confirm: 0, min_move_pct: -1, within_pct: 0}
  - {name: p, type: level_proximity, level: flip, within_pct: 0, band_pct: -1}
  - {name: p2, type: level_proximity, level: vwap, within_pct: 1}
  - {name: g, type: flip_guard, max_distance_pct: 150}
  - {name: g2, type: flip_guard, for: soon}
  - {name: r, type: repositioning, within_pct: -3, top: 0}
"""
EXPECTED = [
    "rules[0].wall: expected one of call, put, both, got 'middle'",
    "rules[1].confirm: must be >= 1 snapshot, got 0",
    "rules[1].min_move_pct: must be >= 0",
    "rules[1].within_pct: must be > 0",
    "rules[2].within_pct: must be > 0",
    "rules[2].band_pct: must be >= 0",
    "rules[3].level: expected one of flip, call_wall, put_wall, got 'vwap'",
    "rules[4].max_distance_pct: must be > 0 and < 100",
    "rules[5].for: expected a duration",
    "rules[6].min_pct: set min_pct and/or min_strike_gex",
    "rules[6].within_pct: must be > 0",
    "rules[6].top: must be within 1..50",
]


def test_check_reports_each_level_rule_field_with_its_path(tmp_path: Path) -> None:
    assert_check_refuses(tmp_path, BAD, EXPECTED)
