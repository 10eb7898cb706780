from __future__ import annotations

from typing import Any

import pytest

from gex_alertd.rules.operator import Observation, iso_ms
from gex_alertd.rules.stale_data import StaleData
from tests.rules.operator_support import T0, drive, obs, op_problems, op_rule, statuses

F, R = "firing", "resolved"


def seen(at_s: float, age_s: float, feeds: dict[str, Any] | None = None, **kw: Any) -> Observation:
    """A poll at `at_s` serving an `as_of` `age_s` old and feeds of the given ages (seconds;
    None = a null timestamp; a string = served as is)."""
    now = T0 + int(at_s * 1000)
    data = None
    if feeds is not None:
        data = {
            name: age if isinstance(age, str) or age is None else iso_ms(now - int(age * 1000))
            for name, age in feeds.items()
        }
    return obs(at_s, as_of_ms=now - int(age_s * 1000), data_as_of=data, **kw)


CASES: list[tuple[str, dict[str, Any], list[Observation], list[tuple[int, str]]]] = [
    ("fresh never fires", {}, [seen(0, 10), seen(15, 10)], []),
    (
        "as_of too old fires once, then resolves on recovery",
        {},
        [seen(0, 10), seen(15, 100), seen(30, 115), seen(45, 5)],
        [(1, F), (3, R)],
    ),
    ("the first observation may fire (a source stale at start)", {}, [seen(0, 100)], [(0, F)]),
    ("exactly max_age is not stale", {}, [seen(0, 60)], []),
    ("a served feed too old", {}, [seen(0, 5, {"flow_feed": 100, "node": 5})], [(0, F)]),
    (
        "a per-feed limit overrides max_age",
        {"feeds": {"oi_feed": "1d"}},
        [seen(0, 5, {"oi_feed": 3 * 3600}), seen(15, 5, {"oi_feed": 2 * 86400})],
        [(1, F)],
    ),
    (
        "a limit of 0 turns a feed off",
        {"feeds": {"macro_feed": 0}},
        [seen(0, 5, {"macro_feed": 9e5})],
        [],
    ),
    ("a null feed timestamp is ignored by default", {}, [seen(0, 5, {"flow_feed": None})], []),
    (
        "a null feed timestamp is stale with missing: stale",
        {"missing": "stale"},
        [seen(0, 5, {"flow_feed": None}), seen(15, 5, {"flow_feed": 1})],
        [(0, F), (1, R)],
    ),
    (
        "an unparseable feed timestamp is missing",
        {"missing": "stale"},
        [seen(0, 5, {"flow_feed": "yesterday"})],
        [(0, F)],
    ),
    (
        "a feed the rule names but the response leaves out is missing",
        {"missing": "stale", "feeds": {"oi_feed": "1d"}},
        [seen(0, 5, {"flow_feed": 1})],
        [(0, F)],
    ),
    ("no data_as_of at all: only as_of is judged", {"missing": "stale"}, [seen(0, 5)], []),
    ("a timestamp in the future is fresh", {}, [seen(0, -600, {"flow_feed": -600})], []),
    ("a feed the provider adds later is judged", {}, [seen(0, 5, {"new_feed": 900})], [(0, F)]),
    (
        "market closed: nothing is judged",
        {},
        [seen(0, 10), seen(15, 900, market_open=False), seen(30, 900)],
        [(2, F)],
    ),
    (
        "an episode open at the close resolves on the next session's first fresh poll",
        {},
        [seen(0, 100), seen(15, 9e4, market_open=False), seen(30, 5)],
        [(0, F), (2, R)],
    ),
    (
        "a failed poll is judged on the last snapshot seen",
        {},
        [seen(0, 10), obs(100, as_of_ms=T0 - 10_000, failure="transient")],
        [(1, F)],
    ),
    (
        "nothing seen yet (a restart into a failing source): not judged",
        {},
        [obs(0, failure="transient"), obs(600, failure="transient")],
        [],
    ),
    (
        "cooldown: a new episode inside it waits, and fires if it still lasts after",
        {"cooldown": "60s"},
        [seen(0, 100), seen(10, 5), seen(20, 100), seen(30, 5), seen(40, 100), seen(70, 100)],
        [(0, F), (1, R), (5, F)],
    ),
    (
        "active_hours: outside the window nothing is judged",
        {"active_hours": {"start": "09:30", "end": "16:00", "tz": "UTC", "days": ["sun"]}},
        [seen(0, 900)],  # T0 is 2025-11-24 16:00 UTC, a Monday
        [],
    ),
]


@pytest.mark.parametrize(
    ("cfg", "observations", "want"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_stale_data(cfg: dict[str, Any], observations: list[Observation], want: list) -> None:
    rule = op_rule(StaleData, type="stale_data", max_age="60s", **cfg)
    assert statuses(rule, observations) == want


def test_events_of_one_episode_share_its_start_and_say_what_is_stale() -> None:
    rule = op_rule(StaleData, type="stale_data", max_age="60s", feeds={"oi_feed": "1d"})
    fired = drive(
        rule, [seen(0, 5), seen(15, 5, {"flow_feed": 300}), seen(30, 5, {"flow_feed": 1})]
    )
    (_, up), (_, down) = fired
    assert up.since_ms == down.since_ms == T0 + 15_000
    assert up.details["stale_feeds"] == "flow_feed"
    assert "flow_feed 5m old (max 60s)" in up.summary
    assert "fresh again" in down.summary and down.details["stale_for"] == "15s"


@pytest.mark.parametrize(
    ("cfg", "fragment"),
    [
        ({"max_age": 0}, "rule.max_age: must be > 0"),
        ({"feeds": {"flow_fed": "5m"}}, "rule.feeds.flow_fed: unknown feed (known: as_of, node"),
        ({"feeds": {"oi_feed": "soon"}}, "rule.feeds.oi_feed"),
        ({"missing": "maybe"}, "rule.missing"),
    ],
)
def test_problems_name_the_field(cfg: dict[str, Any], fragment: str) -> None:
    problems = op_problems(StaleData, type="stale_data", **cfg)
    assert any(fragment in p for p in problems), problems


def test_the_daily_oi_feed_is_judged_against_a_day_by_default() -> None:
    rule = op_rule(StaleData, type="stale_data", max_age="60s")
    assert rule.limit("oi_feed") == 86400 and rule.limit("flow_feed") == 60
    assert statuses(rule, [seen(0, 5, {"oi_feed": 6 * 3600})]) == []
    assert statuses(rule, [seen(0, 5, {"oi_feed": 25 * 3600})]) == [(0, F)]
    tighter = op_rule(StaleData, type="stale_data", max_age="60s", feeds={"oi_feed": "20h"})
    assert statuses(tighter, [seen(0, 5, {"oi_feed": 21 * 3600})]) == [(0, F)]


def test_a_response_with_thousands_of_stale_feeds_makes_a_bounded_event() -> None:
    rule = op_rule(StaleData, type="stale_data", max_age="60s")
    feeds: dict[str, Any] = {f"{'x' * 500}{i}": 900 for i in range(5000)}
    ((_, up),) = drive(rule, [seen(0, 5, feeds)])
    assert len(up.details["stale"]) == 20
    assert up.details["stale_feeds"].endswith("(+4980 more)")
    assert len(up.summary) < 400 and len(up.details["stale_feeds"]) < 20 * 70
