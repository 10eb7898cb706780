from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from gex_alertd import model
from gex_alertd.model import StrikeRow, decode_flow_gex, rowless, strike_rows
from gex_alertd.rules import engine as engine_mod
from gex_alertd.rules import levels as levels_mod
from gex_alertd.rules import registry
from gex_alertd.rules.base import ActiveHours, RuleBase, RuleType
from gex_alertd.rules.engine import Engine, RuleSlot, alert_id
from tests.rules.factory import T0, snap
from tests.rules.helpers import fired_at, make_rule, rule_problems, run
from tests.support.upstream import flow_gex_body


def flips(times: list[datetime]) -> list:
    """Alternate spot around the flip at each time: every snapshot after the first crosses."""
    return [snap(at=t, spot=101.0 if i % 2 else 99.0, flip=100.0) for i, t in enumerate(times)]


def at_seconds(*secs: float) -> list[datetime]:
    return [T0 + timedelta(seconds=s) for s in secs]


@pytest.mark.parametrize(
    ("secs", "want"),
    [
        ((0, 10, 20, 30), [1, 2, 3]),  # cooldown 0: every cross fires
    ],
)
def test_no_cooldown(secs: tuple, want: list) -> None:
    assert fired_at(make_rule(type="flip_cross"), flips(at_seconds(*secs))) == want


@pytest.mark.parametrize(
    ("secs", "want"),
    [
        ((0, 10, 609, 610), [1, 3]),  # 599 s after the alert: suppressed; 600 s: the boundary fires
        ((0, 10, 20, 611), [1, 3]),
        ((0, 10, 300, 609, 615), [1, 4]),  # suppressed alerts do not extend the cooldown
    ],
)
def test_cooldown_boundaries(secs: tuple, want: list) -> None:
    rule = make_rule(type="flip_cross", cooldown="10m")
    assert fired_at(rule, flips(at_seconds(*secs))) == want


def test_cooldown_is_per_symbol() -> None:
    rule = make_rule(type="flip_cross", cooldown="1h")
    snaps = []
    for i in range(4):
        for sym in ("SPY", "QQQ"):
            snaps.append(snap(symbol=sym, at=i, spot=101.0 if i % 2 else 99.0, flip=100.0))
    engine = Engine([rule])
    slots: dict[str, dict[str, RuleSlot]] = {"SPY": {}, "QQQ": {}}
    got = []
    for s in snaps:
        outcome = engine.evaluate(slots[s.symbol], s, None, None)
        slots[s.symbol] = outcome.slots
        got += [(s.symbol, e.event.as_of) for e in outcome.emitted]
    assert sorted(got) == [("QQQ", "2026-05-11T14:00:15.000Z"), ("SPY", "2026-05-11T14:00:15.000Z")]


def test_suppressed_change_does_not_fire_later() -> None:
    # a cross inside the cooldown is consumed: staying on the new side never fires afterwards
    rule = make_rule(type="flip_cross", cooldown="10m")
    t = at_seconds(0, 10, 20, 700, 800)
    snaps = [snap(at=t[0], spot=99), snap(at=t[1], spot=101), snap(at=t[2], spot=99)]
    snaps += [snap(at=t[3], spot=99), snap(at=t[4], spot=99)]
    snaps = [snap(at=s.as_of, spot=s.underlying_price, flip=100.0) for s in snaps]
    assert fired_at(rule, snaps) == [1]


NY = "America/New_York"


@pytest.mark.parametrize(
    ("hours", "local", "inside"),
    [
        ({"start": "09:30", "end": "16:00"}, "2026-05-11 09:30", True),  # Monday, start inclusive
        ({"start": "09:30", "end": "16:00"}, "2026-05-11 16:00", False),  # end exclusive
        ({"start": "09:30", "end": "16:00"}, "2026-05-11 09:29", False),
        ({"start": "09:30", "end": "16:00"}, "2026-05-16 10:00", False),  # Saturday
        ({"start": "22:00", "end": "02:00", "days": ["mon"]}, "2026-05-11 23:00", True),
        (
            {"start": "22:00", "end": "02:00", "days": ["mon"]},
            "2026-05-12 01:59",
            True,
        ),  # Tue morning = Mon's window
        ({"start": "22:00", "end": "02:00", "days": ["mon"]}, "2026-05-12 02:00", False),
        (
            {"start": "22:00", "end": "02:00", "days": ["mon"]},
            "2026-05-11 01:00",
            False,
        ),  # Sun's window
        ({"start": "22:00", "end": "02:00", "days": ["mon"]}, "2026-05-11 12:00", False),
        (
            {"start": "00:00", "end": "00:00", "days": ["sun"]},
            "2026-05-17 12:00",
            True,
        ),  # whole day
        ({"start": "00:00", "end": "00:00", "days": ["sun"]}, "2026-05-18 00:00", False),
    ],
)
def test_active_hours_contains(hours: dict, local: str, inside: bool) -> None:
    from zoneinfo import ZoneInfo

    ah = ActiveHours(tz=NY, **hours)
    ts = datetime.fromisoformat(local).replace(tzinfo=ZoneInfo(NY)).astimezone(UTC)
    assert ah.contains(ts) is inside


def test_active_hours_suppresses_but_consumes() -> None:
    rule = make_rule(type="flip_cross", active_hours={"start": "09:30", "end": "16:00"})
    # 13:00 UTC = 09:00 New York (outside), 14:00 = 10:00 (inside)
    t = [datetime(2026, 5, 11, 13, 0, tzinfo=UTC), datetime(2026, 5, 11, 13, 1, tzinfo=UTC)]
    t += [datetime(2026, 5, 11, 14, 0, tzinfo=UTC), datetime(2026, 5, 11, 14, 1, tzinfo=UTC)]
    snaps = [snap(at=t[0], spot=99, flip=100), snap(at=t[1], spot=101, flip=100)]
    snaps += [snap(at=t[2], spot=101, flip=100), snap(at=t[3], spot=99, flip=100)]
    assert fired_at(rule, snaps) == [3]


@pytest.mark.parametrize(
    ("hours", "fragment"),
    [
        ({"start": "9:75"}, "rule.active_hours.start: expected HH:MM"),
        ({"end": "24:00"}, "rule.active_hours.end: expected HH:MM"),
        ({"tz": "Mars/Olympus"}, "rule.active_hours.tz: unknown time zone"),
        ({"days": []}, "rule.active_hours.days: at least one day"),
        ({"days": ["monday"]}, "rule.active_hours.days[0]: expected one of mon"),
    ],
)
def test_active_hours_problems(hours: dict, fragment: str) -> None:
    problems = rule_problems(type="flip_cross", active_hours=hours)
    assert any(fragment in p for p in problems), problems


def test_symbols_filter() -> None:
    rule = make_rule(type="flip_cross", symbols=["qqq"])
    assert fired_at(rule, flips(at_seconds(0, 10))) == []
    assert Engine([rule]).applicable("QQQ") == [rule]


def test_symbols_with_the_same_rules_share_one_list() -> None:
    # one list per distinct set of rules, not per symbol (memory at 5,000 symbols, issue 12)
    every, spy = (
        make_rule(type="flip_cross"),
        make_rule(type="flip_cross", name="s", symbols=["SPY"]),
    )
    engine = Engine([every, spy])
    assert engine.applicable("QQQ") is engine.applicable("IWM") == [every]
    assert engine.applicable("SPY") == [every, spy]


def test_alert_ids_are_deterministic_and_distinct() -> None:
    a = alert_id("r", "SPY", None, 1, ())
    assert a == alert_id("r", "SPY", None, 1, ()) and a.startswith("al_")
    others = {
        alert_id("r2", "SPY", None, 1, ()),
        alert_id("r", "QQQ", None, 1, ()),
        alert_id("r", "SPY", "2026-05-15", 1, ()),
        alert_id("r", "SPY", None, 2, ()),
        alert_id("r", "SPY", None, 1, (500.0,)),
        alert_id("r", "SPY", None, 1, (), status="resolved"),
    }
    assert a not in others and len(others) == 6
    # a firing id is the same whether the status is named or not (ids stored before it existed)
    assert alert_id("r", "SPY", None, 1, (), status="firing") == a


def test_event_carries_routing_and_expiry() -> None:
    rule = make_rule(type="flip_cross", channels=["desk", "ops"], cooldown="5m")
    engine = Engine([rule])
    s0 = snap(at=0, spot=99, flip=100, expiry="2026-05-15")
    s1 = snap(at=1, spot=101, flip=100, expiry="2026-05-15")
    first = engine.evaluate({}, s0, None, "2026-05-15")
    assert first.emitted == []
    second = engine.evaluate(first.slots, s1, s0, "2026-05-15")
    [em] = second.emitted
    assert em.channels == ["desk", "ops"] and em.cooldown_ms == 300_000
    assert em.event.expiry == "2026-05-15"
    assert em.event.id == alert_id(rule.name, "SPY", "2026-05-15", s1.as_of_ms, ())


def test_state_of_another_type_starts_over() -> None:
    flip = make_rule(type="flip_cross", name="x")
    sign = make_rule(type="net_gex_sign", name="x")
    slot = Engine([flip]).evaluate({}, snap(at=0), None, None).slots["x"]
    raw = Engine([flip]).encode_slot(slot)
    assert Engine([sign]).decode_slot("x", raw) is None
    assert Engine([sign]).decode_slot("x", b"\xc1garbage") is None
    assert Engine([flip]).decode_slot("x", raw) == slot


def test_run_helper_replays_like_live() -> None:
    rule = make_rule(type="flip_cross")
    assert len(run(rule, flips(at_seconds(0, 10, 20)))) == 2


def test_every_event_carries_the_levels_in_its_details() -> None:
    rows = [
        StrikeRow(strike=98.0, call_gex=1e6, put_gex=-5e6),
        StrikeRow(strike=103.0, call_gex=4e6, put_gex=-1e6),
    ]
    rule = make_rule(type="flip_cross", name="f")
    first = snap(spot=99.0, flip=100.0, strikes=rows)
    [(_, event)] = run(rule, [first, snap(at=1, spot=101.0, flip=100.0, net=-1)])
    d = event.details
    assert d["regime"] == "negative" and d["flip_distance_pct"] == 100.0 * (101 - 100) / 101
    assert (d["call_wall"], d["put_wall"]) == (None, None)  # the firing snapshot has no rows
    [(_, event)] = run(
        rule, [snap(spot=99.0, flip=100.0), snap(at=1, spot=101.0, flip=100.0, strikes=rows)]
    )
    assert (event.details["call_wall"], event.details["put_wall"]) == (103.0, 98.0)


def test_the_snapshots_part_of_its_events_is_worked_out_once(monkeypatch) -> None:
    # three rules fire on one snapshot: its levels' details and its as_of are worked out once
    # (they were once per event), and each event still carries them in a dict of its own
    calls = {"levels": 0, "as_of": 0}
    real_levels, real_iso = levels_mod.details, model.iso_utc  # what the engine imports

    def counted_levels(s):
        calls["levels"] += 1
        return real_levels(s)

    def counted_iso(ts):
        calls["as_of"] += 1
        return real_iso(ts)

    monkeypatch.setattr(engine_mod, "level_details", counted_levels)
    monkeypatch.setattr(engine_mod, "iso_utc", counted_iso)
    rules = [make_rule(type="flip_cross", name=n) for n in ("a", "b", "c")]
    engine = Engine(rules)
    slots = engine.evaluate({}, snap(spot=99.0, flip=100.0), None, None).slots
    assert calls == {"levels": 0, "as_of": 0}  # nothing fired, nothing worked out
    outcome = engine.evaluate(slots, snap(at=1, spot=101.0, flip=100.0, net=-1), None, None)
    events = [em.event for em in outcome.emitted]
    assert [e.rule for e in events] == ["a", "b", "c"]
    assert calls == {"levels": 1, "as_of": 1}
    assert all(e.details["regime"] == "negative" for e in events)
    assert all(e.as_of == e.fired_at == events[0].as_of for e in events)
    events[0].details["regime"] = "changed"  # one event's dict is not another's
    assert events[1].details["regime"] == "negative"


def _zone(cooldown: str = "10m", hours: dict | None = None):
    kw = {"active_hours": hours} if hours else {}
    rule = make_rule(
        type="level_proximity", level="flip", within_pct=1.0, on_exit=True, cooldown=cooldown, **kw
    )
    return rule


# spot 510 is outside the 1 % zone around the flip 495, 497 inside; 15 s between snapshots
OUT, IN = 510.0, 497.0


def test_a_resolved_event_is_sent_within_the_cooldown_and_starts_none() -> None:
    # entry (sent), exit 15 s later: inside the 10m cooldown, the resolved event is still sent
    # (the receiver's incident must close); it starts no cooldown of its own
    got = run(_zone(), [snap(at=i, spot=s) for i, s in enumerate([OUT, IN, OUT])])
    assert [(i, e.status) for i, e in got] == [(1, "firing"), (2, "resolved")]
    seq = [OUT, IN, OUT] + [OUT] * 39 + [IN]  # the second entry 10m after the first
    got = run(_zone(), [snap(at=i, spot=s) for i, s in enumerate(seq)])
    assert [(i, e.status) for i, e in got] == [(1, "firing"), (2, "resolved"), (42, "firing")]


def test_no_resolved_event_for_a_firing_that_was_not_sent() -> None:
    # the second entry falls in the cooldown (suppressed): its exit resolves nothing
    engine = Engine([_zone()])
    slots: dict = {}
    sent, held = [], []
    for i, s in enumerate([OUT, IN, OUT, IN, OUT]):
        outcome = engine.evaluate(slots, snap(at=i, spot=s), None, None)
        slots = {k: engine.decode_slot(k, engine.encode_slot(v)) for k, v in outcome.slots.items()}
        sent += [(i, em.event.status) for em in outcome.emitted]
        held += [(i, sup.event.status, sup.reason) for sup in outcome.suppressed]
    assert sent == [(1, "firing"), (2, "resolved")]
    assert held == [(3, "firing", "cooldown"), (4, "resolved", "firing_not_sent")]


def test_snapshots_that_fire_nothing_keep_the_cooldown_and_what_was_sent() -> None:
    # between two crosses, snapshots on the same side fire nothing: the cross back still falls
    # in the first one's cooldown (its last firing time carried through them)
    seq = [(0, 99.0), (10, 101.0), (20, 101.0), (30, 101.0), (40, 99.0), (700, 101.0)]
    crosses = [snap(at=T0 + timedelta(seconds=s), spot=p, flip=100.0) for s, p in seq]
    assert fired_at(make_rule(type="flip_cross", cooldown="10m"), crosses) == [1, 5]
    # and whether the last firing was sent: an entry sent is resolved after snapshots inside
    # the zone, one held back by the cooldown is not
    engine = Engine([_zone()])
    slots: dict = {}
    sent, held = [], []
    for i, s in enumerate([OUT, IN, IN, OUT, IN, IN, IN, OUT]):
        outcome = engine.evaluate(slots, snap(at=i, spot=s), None, None)
        slots = outcome.slots
        sent += [(i, em.event.status) for em in outcome.emitted]
        held += [(i, sup.event.status, sup.reason) for sup in outcome.suppressed]
    assert sent == [(1, "firing"), (3, "resolved")]
    assert held == [(4, "firing", "cooldown"), (7, "resolved", "firing_not_sent")]


def test_a_resolved_event_after_active_hours_closes_what_was_sent() -> None:
    # entry at 15:59:45 New York (sent), exit at 16:00:00 (outside the window): still sent
    hours = {"start": "09:30", "end": "16:00"}
    t = datetime(2026, 5, 11, 19, 59, 45, tzinfo=UTC)  # a Monday, 15:59:45 EDT
    seq = [(t - timedelta(seconds=15), OUT), (t, IN), (t + timedelta(seconds=15), OUT)]
    got = run(_zone("0s", hours), [snap(at=ts, spot=s) for ts, s in seq])
    assert [(i, e.status) for i, e in got] == [(1, "firing"), (2, "resolved")]


def test_a_slot_stored_before_open_existed_still_resolves() -> None:
    # the older layout [type, last_fired_ms, state]: the rule's own state decides, as it did
    engine = Engine([_zone()])
    first = engine.evaluate({}, snap(at=0, spot=OUT), None, None)
    entered = engine.evaluate(first.slots, snap(at=1, spot=IN), None, None)
    slot = entered.slots["r"]
    old = msgspec.msgpack.encode([slot.type, slot.last_fired_ms, slot.state])
    back = engine.decode_slot("r", old)
    assert back is not None and back.open
    [em] = engine.evaluate({"r": back}, snap(at=2, spot=OUT), None, None).emitted
    assert em.event.status == "resolved"


def test_a_held_back_firing_closes_the_slot_whatever_it_held_before() -> None:
    # a slot left open (an older layout reads open) and a new entry held back by the cooldown:
    # the exit that follows resolves nothing, since the receiver never saw that entry
    engine = Engine([_zone()])
    first = engine.evaluate({}, snap(at=0, spot=OUT), None, None).slots["r"]
    slots = {"r": RuleSlot(first.type, snap(at=0).as_of_ms, first.state, True)}
    entered = engine.evaluate(slots, snap(at=1, spot=IN), None, None)
    assert [s.reason for s in entered.suppressed] == ["cooldown"] and not entered.slots["r"].open
    left = engine.evaluate(entered.slots, snap(at=2, spot=OUT), None, None)
    assert left.emitted == [] and [s.reason for s in left.suppressed] == ["firing_not_sent"]


class _RowsProbe(RuleBase, tag="rows_probe", kw_only=True):
    """A rule type that reads `snap.strikes` (none of the built-in ones does)."""


class _Seen(msgspec.Struct):
    rows: int


def test_a_rule_type_that_reads_rows_gets_them_from_a_rowless_snapshot(monkeypatch) -> None:
    seen: list[tuple[int, int | None]] = []

    def evaluate(rule, state, s, prev):
        seen.append((len(s.strikes), None if prev is None else len(prev.strikes)))
        return _Seen(len(s.strikes)), []

    monkeypatch.setitem(registry.BY_CONFIG, _RowsProbe, RuleType(_RowsProbe, _Seen, evaluate))
    body = msgspec.json.encode(flow_gex_body("SPY", as_of=T0, strikes=9))
    later = msgspec.json.encode(flow_gex_body("SPY", as_of=T0 + timedelta(seconds=15), strikes=9))
    cur, prev = rowless(decode_flow_gex(later)), rowless(decode_flow_gex(body))
    assert cur.strikes == [] and prev.strikes == []  # as the poll path commits them
    probe, flip = _RowsProbe(name="probe"), make_rule(type="flip_cross")
    Engine([probe, flip]).evaluate({}, cur, prev, None)
    assert seen == [(9, 9)]
    assert strike_rows(cur) == decode_flow_gex(later).strikes  # what it was given back


# every rule type that reads a previous snapshot, in the settings that read it differently
PREV_READERS = [
    dict(type="oi_change", basis="poll", side=side, within_pct=pct, **floor)
    for side in ("call", "put", "both")
    for floor in ({"min_contracts": 5000}, {"min_pct": 50.0}, {"min_contracts": 1, "min_pct": 5})
    for pct in (None, 5.0)
]


def test_rule_types_read_only_the_previous_columns_they_name() -> None:
    """The live commit keeps only `RuleType.prev_columns` of a previous snapshot's view (the
    other rows come back NaN): any rule reading more would judge against nulls there."""
    import itertools
    import random

    import numpy as np

    from gex_alertd.rules.columns import FIELDS, StrikeColumns, attach, columns, detached
    from tests.rules.factory import chain

    default = RuleType.__dataclass_fields__["needs_prev"].default
    readers = {t.name for t in registry.BY_NAME.values() if t.needs_prev is not default}
    assert readers == {kw["type"] for kw in PREV_READERS}  # a new reader must be listed above
    rng = random.Random(3)
    snaps = []
    for at in range(8):
        rows = chain(500.0 + (at == 5) * 3, rng=rng)  # the 6th: the strike set moves
        rows[4] = msgspec.structs.replace(rows[4], put_oi=None)
        snaps.append(snap(at=at, spot=500.0 + at, strikes=rows))
    fired = 0
    for kw in PREV_READERS:
        rule = make_rule(name="r", **kw)
        t = registry.rule_type(rule)
        assert t.needs_prev(rule)
        engine = Engine([rule])
        slots = engine.evaluate({}, snaps[0], None, None).slots
        for prev, cur in itertools.pairwise(snaps):
            masked = detached(prev)
            m = columns(prev).m.copy()
            m[[i for i, f in enumerate(FIELDS) if f not in t.prev_columns]] = np.nan
            attach(masked, StrikeColumns(m))
            whole = engine.evaluate(slots, cur, prev, None)
            assert engine.evaluate(slots, cur, masked, None) == whole, kw
            fired += len(whole.emitted)
            slots = whole.slots
    assert fired  # the chains move enough to fire
