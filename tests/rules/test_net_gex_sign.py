from __future__ import annotations

import pytest

from tests.rules.factory import snap
from tests.rules.helpers import fired_at, make_rule, rule_problems, run

B = 1e9
CASES = [
    # (id, direction, min_abs, confirm, nets, expected)
    ("to negative", "any", 0, 1, [B, -B], [1]),
    ("to positive", "any", 0, 1, [-B, B], [1]),
    ("first never fires", "any", 0, 1, [-B], []),
    ("direction to_negative only", "to_negative", 0, 1, [-B, B, -B], [2]),
    ("direction to_positive only", "to_positive", 0, 1, [B, -B, B], [2]),
    ("sign at zero is ignored", "any", 0, 1, [B, 0.0, B], []),
    ("zero then across", "any", 0, 1, [B, 0.0, -B], [2]),
    ("zero first then baseline", "any", 0, 1, [0.0, B, -B], [2]),
    ("deadband ignored", "any", 0.5 * B, 1, [B, -0.4 * B, 0.3 * B, B], []),
    ("deadband edge is inside", "any", 0.5 * B, 1, [B, -0.5 * B, B], []),
    ("outside deadband counts", "any", 0.5 * B, 1, [B, -0.4 * B, -0.6 * B], [2]),
    ("confirm 3 needs 3 in a row", "any", 0, 3, [B, -B, -B, -B, -B], [3]),
    ("confirm broken restarts", "any", 0, 3, [B, -B, -B, B, -B, -B], []),
    ("confirm streak survives deadband", "any", 0.5 * B, 2, [B, -B, 0.1 * B, -B], [3]),
    ("confirm twice", "any", 0, 2, [B, -B, -B, B, B], [2, 4]),
]


@pytest.mark.parametrize(
    ("direction", "min_abs", "confirm", "nets", "want"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_net_gex_sign_table(
    direction: str, min_abs: float, confirm: int, nets: list, want: list
) -> None:
    rule = make_rule(type="net_gex_sign", direction=direction, min_abs=min_abs, confirm=confirm)
    assert fired_at(rule, [snap(at=i, net=n) for i, n in enumerate(nets)]) == want


def test_net_gex_sign_details() -> None:
    rule = make_rule(type="net_gex_sign")
    [(_, ev)] = run(rule, [snap(at=0, net=2e9), snap(at=1, net=-1.5e9)])
    assert ev.details["direction"] == "to_negative"
    assert ev.details["previous_sign"] == "positive" and ev.details["sign"] == "negative"
    assert ev.details["live_net_gex"] == -1.5e9
    assert "turned negative" in ev.summary and "-1.50bn" in ev.summary


@pytest.mark.parametrize(
    ("kw", "fragment"),
    [
        ({"direction": "down"}, "rule.direction: expected one of to_negative, to_positive, any"),
        ({"min_abs": -5}, "rule.min_abs: must be >= 0"),
        ({"confirm": 0}, "rule.confirm: must be >= 1"),
    ],
)
def test_net_gex_sign_problems(kw: dict, fragment: str) -> None:
    assert any(fragment in p for p in rule_problems(type="net_gex_sign", **kw))
