"""A field of the wrong type does not hide the other problems of its struct: `check` names every
bad field of every rule and channel at once (design.md, Config contract)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gex_alertd import config
from gex_alertd.config import ConfigError
from tests.hostile.support_config import assert_check_refuses

BAD = """
channels:
  tty: {type: console}
  hook: {type: webhook, url: "ftp://x", timeout_s: -1, max_attempts: 0, min_severity: loud}
rules:
  - {name: a, type: flip_cross, direction: sideways, band_pct: -1, follow_up: [0s],
     severity: loud, channels: [tty]}
  - {name: [b], type: flip_cross, band_pct: 120, symbols: [], cooldown: soon}
  - {name: c, type: threshold, field: nope, above: x, below: 3}
  - {name: d, type: threshold, field: underlying_price, above: -5, cooldown: 3x}
"""

EXPECTED = [
    "channels.hook.min_severity: expected one of info, warning, critical, got 'loud'",
    "channels.hook.max_attempts: must be >= 1, got 0",
    "channels.hook.timeout_s: must be > 0, got -1.0",
    "channels.hook.url: expected an http(s) URL",
    "rules[0].severity: expected one of info, warning, critical, got 'loud'",
    "rules[0].direction: expected one of up, down, any, got 'sideways'",
    "rules[0].follow_up[0]: must be longer than 0, got 0",
    "rules[0].band_pct: must be >= 0 and < 100 (percent of spot), got -1.0",
    "rules[1].name: expected a string, got a list",
    "rules[1].cooldown: expected a duration such as 30s, 10m, 7d, got 'soon'",
    'rules[1].symbols: empty list: the rule would never run (use "*" for all)',
    "rules[1].band_pct: must be >= 0 and < 100 (percent of spot), got 120.0",
    "rules[2].field: expected one of live_net_gex, underlying_price, flip_distance_pct, got 'nope'",
    "rules[2].above: expected a number, got 'x'",
    "rules[3].cooldown: expected a duration such as 30s, 10m, 7d, got '3x'",
    "rules[3].above: the price is always > 0, so -5.0 can never be crossed",
]


def test_every_bad_field_of_every_rule_and_channel() -> None:
    with pytest.raises(ConfigError) as err:
        config.parse(yaml.safe_load(BAD))
    assert err.value.problems == EXPECTED


def test_a_field_that_failed_is_reported_once() -> None:
    """The struct's own checks run on a stand-in for the bad field; what they say about the
    stand-in is not the operator's problem and is dropped."""
    tree = {"rules": [{"name": "t", "type": "threshold", "field": "nope", "above": [1]}]}
    with pytest.raises(ConfigError) as err:
        config.parse(tree)
    # a stand-in `above` (None) would also get "set above and/or below"
    assert err.value.problems == [
        "rules[0].field: expected one of live_net_gex, underlying_price, flip_distance_pct, "
        "got 'nope'",
        "rules[0].above: expected a number, got a list",
    ]


def test_a_field_that_failed_is_not_taken_for_one_left_unset() -> None:
    """The operator did set `below` (to a wrong type): its stand-in (None) must not make the
    check on the field that goes with it say that neither is set."""
    tree = {
        "rules": [
            {"name": "t", "type": "threshold", "field": "live_net_gex", "below": [1]},
            {"name": "o", "type": "oi_change", "min_pct": "x"},
            {"name": "r", "type": "repositioning", "min_strike_gex": "x", "top": 0},
        ]
    }
    with pytest.raises(ConfigError) as err:
        config.parse(tree)
    assert err.value.problems == [
        "rules[0].below: expected a number, got a list",
        "rules[1].min_pct: expected a number, got 'x'",
        "rules[2].min_strike_gex: expected a number, got 'x'",
        "rules[2].top: must be within 1..50, got 0",  # a good field's own problem is still there
    ]


def test_check_exits_2_with_all_of_them(tmp_path: Path) -> None:
    assert_check_refuses(tmp_path, BAD, EXPECTED)
