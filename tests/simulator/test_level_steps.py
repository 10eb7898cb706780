"""The scenario steps that make the level rules fire: wall, approach, drift, flip_status.

The simulator is driven without HTTP (a ManualClock); its bodies go through the same decoders
as the daemon's and the rules through the engine, as the live path runs them."""

from __future__ import annotations

from typing import Any

import pytest

from gex_alertd.config import SimulatorOptions
from gex_alertd.model import FlowGex, decode_flow_gex
from gex_alertd.rules.levels import levels
from gex_alertd.rules.repositioning import attach_settled, settled_from
from gex_alertd.settled import decode_settled
from gex_alertd.sources.simulator.clock import ManualClock
from gex_alertd.sources.simulator.embedded import make_simulator
from gex_alertd.sources.simulator.scenario import ScenarioError, loads_scenario
from tests.rules.helpers import make_rule, run

START = "start: 2026-03-02T14:30:00Z\n"
PRE = "  - {at: 3s, do: spot, symbol: SPY, move_pct: -1.5}\n"


def history(events: str, symbol: str, seconds: int, settled_at: float | None = None) -> list:
    sim = make_simulator(SimulatorOptions(cache_s=0), START + events, ManualClock())
    clock = sim.clock
    assert isinstance(clock, ManualClock)
    out: list[FlowGex] = []
    settled = None
    for t in range(0, seconds, 2):
        clock.set(float(t))
        if settled_at is not None and settled is None and t >= settled_at:
            settled = settled_from(decode_settled(sim.body("exposure", symbol, None), symbol))
        s = decode_flow_gex(sim.body("flow", symbol, None), symbol=symbol)
        if settled is not None:
            attach_settled(s, settled)
        out.append(s)
    return out


def fired(rule: dict[str, Any], snaps: list[FlowGex]) -> list[tuple[int, Any]]:
    return run(make_rule(name="r", **rule), snaps)


def test_wall_step_makes_wall_shift_fire() -> None:
    snaps = history(
        "events:\n  - {at: 10s, do: wall, symbol: SPY, wall: call, move_pct: 2}\n", "SPY", 30
    )
    before, after = levels(snaps[0]).call_wall, levels(snaps[-1]).call_wall
    assert before is not None and after is not None and after > before
    events = fired({"type": "wall_shift", "wall": "call"}, snaps)
    assert [(e.details["from"], e.details["to"]) for _, e in events] == [(before, after)]
    assert events[0][0] == 6  # t=10 s moved it, confirmed by the second snapshot (t=12 s)


# the walls sit at the listed strike nearest spot (0DTE gamma): the spot is first moved off
# one, so the approach is an entry into a narrow zone
@pytest.mark.parametrize(
    ("level", "pre", "within"),
    [("flip", "", 0.2), ("call_wall", PRE, 0.1), ("put_wall", PRE, 0.1)],
)
def test_approach_step_makes_level_proximity_fire(level: str, pre: str, within: float) -> None:
    ev = (
        f"events:\n{pre}  - {{at: 10s, do: approach, symbol: SPY, level: {level}, gap_pct: 0.05}}\n"
    )
    snaps = history(ev, "SPY", 20)
    events = fired({"type": "level_proximity", "level": level, "within_pct": within}, snaps)
    assert [i for i, _ in events] == [5], [(i, e.summary) for i, e in events]


def test_flip_status_step_makes_flip_guard_fire_and_resolve() -> None:
    ev = (
        "events:\n  - {at: 10s, do: flip_status, symbol: IWM, status: no_boundary, duration: 20s}\n"
    )
    snaps = history(ev, "IWM", 40)
    events = fired({"type": "flip_guard", "for": "10s"}, snaps)
    # withheld from t=10 s; 10 s later (t=20 s) it fires; back at t=30 s it resolves
    assert [(i, e.status) for i, e in events] == [(10, "firing"), (15, "resolved")]


def test_drift_step_makes_repositioning_fire() -> None:
    ev = "events:\n  - {at: 10s, do: drift, symbol: QQQ, pct: 30, over_s: 6s}\n"
    snaps = history(ev, "QQQ", 30, settled_at=0)
    events = fired({"type": "repositioning", "min_pct": 20, "within_pct": 3}, snaps)
    assert len(events) == 1 and 10 <= events[0][0] * 2 <= 18, [i for i, _ in events]
    assert events[0][1].details["changed_pct"] > 20
    # without the settled profile nothing fires
    assert fired({"type": "repositioning", "min_pct": 20}, history(ev, "QQQ", 30)) == []


def test_the_new_steps_are_checked_with_paths() -> None:
    bad = """
events:
  - {at: 1s, do: wall, symbol: SPY, move_pct: 0}
  - {at: 1s, do: drift, symbol: SPY, pct: 0}
  - {at: 1s, do: flip_status, symbol: SPY, status: available}
  - {at: 1s, do: approach, symbol: SPY, level: moon}
"""
    with pytest.raises(ScenarioError) as err:
        loads_scenario(bad)
    text = "\n".join(err.value.problems)
    assert "events[3].level" in text, text
    ok = bad.replace("level: moon", "level: flip")
    with pytest.raises(ScenarioError) as err:
        loads_scenario(ok)
    paths = {p.split(":")[0] for p in err.value.problems}
    assert paths == {"events[0].move_pct", "events[1].pct", "events[2].status"}, paths
