"""/healthz's problems from the daemon's parts (`ops.health.problems`), for the conditions that
depend on the market gate: real pollers in a real poll pool, the rest of the daemon as plain
values."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

from gex_alertd.config import WatchTarget
from gex_alertd.ops import health
from gex_alertd.pipeline import ASIDE_PERSISTS, Poller
from gex_alertd.pool import PollPool
from gex_alertd.redis_errors import RedisTrouble
from gex_alertd.sources.backoff import Backoff


@dataclass
class Gate:
    open: bool | None


@dataclass
class Parts:
    pool: PollPool
    gate: Gate | None
    stopping: bool = False
    member: Any = None
    trouble: RedisTrouble = field(default_factory=RedisTrouble)


async def _never(*_args: Any) -> Any:
    raise AssertionError("not polled here")


def _problems(pool: PollPool, gate: Gate | None) -> list[str]:
    """`problems` of a daemon with this pool and gate, Redis answering."""
    return health.problems(cast(health.Parts, Parts(pool, gate)), True)


def _pool(stuck: int) -> PollPool:
    """SPY, QQQ and IWM owned; the first `stuck` of them with their last ASIDE_PERSISTS
    snapshots set aside."""
    pollers = []
    for i, symbol in enumerate(("SPY", "QQQ", "IWM")):
        target = WatchTarget(symbol, None, 1.0, 0.0)
        p = Poller(target, cast(Any, _never), _never, backoff=Backoff(1, 2))
        if i < stuck:
            p.aside_streak = ASIDE_PERSISTS
            p.aside_reason = "redis data: ResponseError: WRONGTYPE Operation against a key"
        pollers.append(p)
    pool = PollPool(workers=2)
    pool.replace(pollers)
    pool.own(pool.pollers.keys())
    return pool


async def test_set_aside_targets_are_a_problem_while_the_market_is_open_or_has_no_hours() -> None:
    pool = _pool(stuck=1)
    for gate in (None, Gate(True), Gate(None)):  # None: the gate not applied yet
        (line,) = _problems(pool, gate)
        assert line.startswith(f"snapshots of SPY cannot be committed ({ASIDE_PERSISTS} in a row")
        assert line.endswith("WRONGTYPE Operation against a key")


async def test_set_aside_targets_are_no_problem_while_the_market_is_closed() -> None:
    # nothing is polled until the open: a key repaired after the close could show no fix, and
    # /healthz would answer 503 all night
    assert _problems(_pool(stuck=2), Gate(False)) == []


async def test_one_or_two_set_aside_in_a_row_are_events_not_a_problem() -> None:
    pool = _pool(stuck=1)
    spy = pool.pollers["SPY"]
    assert isinstance(spy, Poller)
    spy.aside_streak = ASIDE_PERSISTS - 1
    assert _problems(pool, None) == []
