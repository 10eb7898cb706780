"""Drives an operator rule through a list of observations, state round-tripped as stored."""

from __future__ import annotations

from typing import Any

import msgspec

from gex_alertd.rules.base import RuleBase
from gex_alertd.rules.operator import Episode, Observation, OpFired
from gex_alertd.rules.registry import operator_type
from gex_alertd.typedconfig import Problems, convert

T0 = 1_764_000_000_000  # ms; any instant: the rules only see what the observation says


def op_rule(config: type[RuleBase], **kw: Any) -> Any:
    """Build through the config converter, so the tests exercise problems() too."""
    problems = Problems()
    rule = convert({"name": "r", **kw}, config, "rule", problems)
    assert not problems, problems
    return rule


def op_problems(config: type[RuleBase], **kw: Any) -> list[str]:
    problems = Problems()
    convert({"name": "r", **kw}, config, "rule", problems)
    return list(problems)


def obs(at_s: float, **kw: Any) -> Observation:
    return Observation(symbol="SPY", now_ms=T0 + int(at_s * 1000), **kw)


def drive(rule: RuleBase, observations: list[Observation]) -> list[tuple[int, OpFired]]:
    observe = operator_type(rule).observe
    state: Episode | None = None
    out = []
    for i, o in enumerate(observations):
        new, fired = observe(rule, state, o)
        state = msgspec.msgpack.decode(msgspec.msgpack.encode(new), type=Episode)
        out += [(i, f) for f in fired]
    return out


def statuses(rule: RuleBase, observations: list[Observation]) -> list[tuple[int, str]]:
    return [(i, f.status) for i, f in drive(rule, observations)]
