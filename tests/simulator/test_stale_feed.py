"""The simulator's `stale_feed` step: one data_as_of feed lags the snapshot for a while, which
makes stale_data fire, and resolve when the window ends."""

from __future__ import annotations

import pytest

from gex_alertd.config import SimulatorOptions
from gex_alertd.model import as_ms, decode_flow_gex
from gex_alertd.rules.operator import Observation
from gex_alertd.rules.stale_data import StaleData
from gex_alertd.sources.simulator.clock import ManualClock
from gex_alertd.sources.simulator.embedded import make_simulator
from gex_alertd.sources.simulator.scenario import ScenarioError, loads_scenario
from tests.rules.operator_support import op_rule, statuses

SCENARIO = """
start: 2026-03-02T14:30:00Z
events:
  - {at: 10s, do: stale_feed, symbol: SPY, feed: flow_feed, lag: 10m, duration: 20s}
"""


def test_stale_feed_step_makes_stale_data_fire_then_resolve() -> None:
    clock = ManualClock()
    sim = make_simulator(SimulatorOptions(cache_s=0), SCENARIO, clock)
    rule = op_rule(StaleData, type="stale_data", max_age="2m")
    observations = []
    lags = []
    for t in (0, 5, 10, 15, 29, 30, 35):
        clock.set(t)
        snap = decode_flow_gex(sim.body("flow", "SPY", None), symbol="SPY")
        assert snap.data_as_of is not None
        flow = snap.data_as_of["flow_feed"]
        assert flow is not None
        lags.append((snap.as_of - snap.as_of.fromisoformat(flow)).total_seconds())
        # the daemon's clock agrees with the served as_of (a live simulator)
        observations.append(
            Observation(
                symbol="SPY",
                now_ms=as_ms(snap.as_of),
                as_of_ms=as_ms(snap.as_of),
                data_as_of=snap.data_as_of,
            )
        )
    assert lags == [0, 0, 600, 600, 600, 0, 0]
    assert statuses(rule, observations) == [(2, "firing"), (5, "resolved")]


def test_an_unknown_feed_is_a_scenario_problem() -> None:
    with pytest.raises(ScenarioError) as err:
        loads_scenario("events:\n  - {at: 1s, do: stale_feed, symbol: SPY, feed: flow_fed}\n")
    assert "events[0].feed: unknown feed 'flow_fed'" in str(err.value)
