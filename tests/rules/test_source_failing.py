from __future__ import annotations

from typing import Any

import pytest

from gex_alertd.rules.operator import Observation
from gex_alertd.rules.source_failing import SourceFailing
from tests.rules.operator_support import T0, drive, obs, op_problems, op_rule, statuses

F, R = "firing", "resolved"


def ok(at_s: float) -> Observation:
    return obs(at_s, as_of_ms=T0)


def fail(at_s: float, kind: str = "transient", status: int | None = 503) -> Observation:
    return obs(at_s, failure=kind, status=status, error=f"HTTP {status}: upstream said no")


CASES: list[tuple[str, dict[str, Any], list[Observation], list[tuple[int, str]]]] = [
    ("success never fires", {}, [ok(0), ok(15)], []),
    (
        "fires once failures have lasted `for`, resolves on the next success",
        {},
        [ok(0), fail(15), fail(60), fail(75), fail(90), ok(105), ok(120)],
        [(3, F), (5, R)],
    ),
    ("failures shorter than `for` never fire", {}, [ok(0), fail(15), fail(60), ok(70)], []),
    (
        "the episode starts at the first failure, not at the last success",
        {},
        [ok(0), fail(50), fail(100), fail(110)],
        [(3, F)],
    ),
    (
        "a 429 is neither a failure nor a recovery",
        {},
        [fail(0), fail(30, "rate_limited", 429), fail(60), ok(75)],
        [(2, F), (3, R)],
    ),
    ("429s alone never fire", {}, [fail(t, "rate_limited", 429) for t in range(0, 600, 30)], []),
    ("401/403 fires at once", {}, [ok(0), fail(15, "auth", 401)], [(1, F)]),
    ("404/400 fires at once", {}, [ok(0), fail(15, "permanent", 404)], [(1, F)]),
    (
        "an auth failure inside a transient episode fires once",
        {},
        [fail(0), fail(10, "auth", 403), fail(100), ok(110)],
        [(1, F), (3, R)],
    ),
    ("for: 0 fires on the first failure", {"for": 0}, [ok(0), fail(15)], [(1, F)]),
    ("the first poll the rule sees may fire", {"for": 0}, [fail(0)], [(0, F)]),
    (
        "a timeout (no status) is a failure",
        {},
        [fail(0, status=None), fail(60, status=None)],
        [(1, F)],
    ),
    (
        "cooldown holds a second episode back until it has passed",
        {"for": 0, "cooldown": "5m"},
        [fail(0), ok(10), fail(20), ok(30), fail(400)],
        [(0, F), (1, R), (4, F)],
    ),
]


@pytest.mark.parametrize(
    ("cfg", "observations", "want"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_source_failing(cfg: dict[str, Any], observations: list[Observation], want: list) -> None:
    rule = op_rule(SourceFailing, type="source_failing", **{"for": "60s", **cfg})
    assert statuses(rule, observations) == want


def test_events_carry_the_failure_and_the_episode_start() -> None:
    rule = op_rule(SourceFailing, type="source_failing", **{"for": "30s"})
    (_, up), (_, down) = drive(rule, [fail(0), fail(45), ok(60)])
    assert up.since_ms == down.since_ms == T0
    assert up.details["status"] == 503 and up.details["failing_for_s"] == 45.0
    assert "failing for 45s (HTTP 503)" in up.summary
    assert "recovered (failing for 60s)" in down.summary
    assert rule.severity == "critical"  # the type's default


@pytest.mark.parametrize(
    ("cfg", "fragment"),
    [
        ({"for": "soon"}, "rule.for"),
        ({"for": -1}, "rule.for"),
        ({"severity": "loud"}, "rule.severity"),
        ({"fro": "1m"}, "fro"),
    ],
)
def test_problems_name_the_field(cfg: dict[str, Any], fragment: str) -> None:
    problems = op_problems(SourceFailing, type="source_failing", **cfg)
    assert any(fragment in p for p in problems), problems


def test_operator_rules_are_not_snapshot_rules() -> None:
    # the engine (live commit and replay) skips them, and they do not make it read rows
    from gex_alertd.rules.engine import Engine
    from gex_alertd.rules.registry import columns_only, is_operator
    from gex_alertd.rules.stale_data import StaleData

    rules = [op_rule(SourceFailing, type="source_failing"), op_rule(StaleData, type="stale_data")]
    assert all(is_operator(r) for r in rules)
    assert Engine(rules).rules == [] and columns_only(rules)
