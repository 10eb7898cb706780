"""Scenario YAML: typed, every problem with its path; the packaged demo loads."""

from __future__ import annotations

from pathlib import Path

import pytest

from gex_alertd.sources.simulator.scenario import (
    BlockEvent,
    CrossFlipEvent,
    DriftEvent,
    FaultEvent,
    NetSignEvent,
    ScenarioError,
    WallEvent,
    load_scenario,
    loads_scenario,
)


def test_demo_is_packaged() -> None:
    sc = load_scenario("demo")
    kinds = [type(e) for e in sc.events]
    assert kinds == [CrossFlipEvent, NetSignEvent, BlockEvent, WallEvent, DriftEvent]
    assert [float(e.at) for e in sc.events] == [10.0, 20.0, 30.0, 40.0, 44.0]


def test_parses_durations_and_uppercases_symbols() -> None:
    sc = loads_scenario(
        """
start: 2026-03-02T14:30:00Z
symbols: {spy: {spot: 601.5, annual_vol: 0.2}}
events:
  - {at: 1m30s, do: fault, kind: error, status: 500, duration: 10s}
  - {at: 5, do: block, symbol: iwm, contracts: 100, strike: 240, expiry: 2026-03-06}
"""
    )
    assert sc.symbols["SPY"].spot == 601.5
    assert isinstance(sc.events[0], BlockEvent) and sc.events[0].symbol == "IWM"  # sorted by at
    assert sc.events[0].strike == 240
    fault = sc.events[1]
    assert isinstance(fault, FaultEvent) and fault.at == 90 and fault.duration == 10


def test_every_problem_with_its_path() -> None:
    with pytest.raises(ScenarioError) as exc:
        loads_scenario(
            """
tick_s: fast
events:
  - {at: 5s, do: teleport, symbol: SPY}
  - {at: 5s, do: block, symbol: SPY}
  - {at: soon, do: cross_flip, symbol: SPY, side: sideways}
  - {at: 1, do: spot, symbol: SPY, bogus: 1}
""",
            "sc.yaml",
        )
    text = str(exc.value)
    assert text.startswith("sc.yaml: ")
    for needle in (
        "tick_s:",
        "events[0]",
        "teleport",
        "events[1].contracts",
        "events[2].at",
        "events[2].side",
        "events[3].bogus",
    ):
        assert needle in text, (needle, text)


def test_semantic_checks_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError) as exc:
        loads_scenario(
            "events:\n  - {at: 1, do: spot, symbol: SPY}\n"
            "  - {at: 2, do: fault, kind: error, status: 404}\n"
            "  - {at: 3, do: block, symbol: SPY, contracts: -5}\n"
        )
    assert exc.value.problems == [
        "events[0]: spot needs exactly one of to, move_pct",
        "events[1].status: must be a 5xx status, got 404",
        "events[2].contracts: must be > 0, got -5",
    ]
    with pytest.raises(ScenarioError, match=r"events\[0\]\.expiry: "):
        loads_scenario("events:\n  - {at: 3, do: block, symbol: SPY, contracts: 5, expiry: 6 May}")
    with pytest.raises(ScenarioError, match="line 3, column 1: invalid YAML"):
        loads_scenario("events:\n  - {at: 1\n")
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario("missing.yaml", tmp_path)


async def test_run_with_a_bad_scenario_file_exits_2_naming_it(
    tmp_path: Path, redis_url: str
) -> None:
    """`run` on the embedded simulator with a scenario file it cannot use: a bad config (exit
    2, the key and the file named), not a traceback and exit 1."""
    from tests.daemon.test_cli_check_tail import run_cli

    (tmp_path / "bad.yaml").write_text("tick_s: -1\nsymbols: {SPY: {spot: 0}}\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "source: {kind: simulator, simulator: {scenario: bad.yaml}}\n"
        f"redis: {{url: '{redis_url}'}}\n"
        "watch: {symbols: [SPY], market_hours: always}\n"
    )
    rc, out, err = await run_cli("run", "--config", str(cfg))
    assert rc == 2, out + err
    assert "source.simulator.scenario" in err and "bad.yaml" in err, err
    assert "tick_s" in err and "Traceback" not in out + err
