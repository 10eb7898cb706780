from __future__ import annotations

from typing import Any

from gex_alertd.model import AlertEvent, FlowGex
from gex_alertd.rules.base import RuleBase
from gex_alertd.rules.engine import Engine, RuleSlot
from gex_alertd.rules.registry import BY_NAME
from gex_alertd.typedconfig import Problems, convert


def make_rule(**kw: Any) -> RuleBase:
    """Build a rule through the config converter, so tests exercise problems() too."""
    problems = Problems()
    tree = {"name": kw.pop("name", "r"), **kw}
    rule = convert(tree, BY_NAME[tree["type"]].config, "rule", problems)
    assert not problems, problems
    return rule


def rule_problems(**kw: Any) -> list[str]:
    problems = Problems()
    tree = {"name": kw.pop("name", "r"), **kw}
    convert(tree, BY_NAME[tree["type"]].config, "rule", problems)
    return list(problems)


def run(rule: RuleBase, snaps: list[FlowGex]) -> list[tuple[int, AlertEvent]]:
    """Feed snapshots in order through the engine (state in memory, like replay)."""
    engine = Engine([rule])
    slots: dict[str, RuleSlot] = {}
    prev: FlowGex | None = None
    out = []
    for i, s in enumerate(snaps):
        outcome = engine.evaluate(slots, s, prev, s.expiry)
        slots = outcome.slots
        # round-trip the state through its stored form, as the live path does
        slots = {k: _round_trip(engine, k, v) for k, v in slots.items()}
        out += [(i, em.event) for em in outcome.emitted]
        prev = s
    return out


def _round_trip(engine: Engine, name: str, slot: RuleSlot) -> RuleSlot:
    back = engine.decode_slot(name, engine.encode_slot(slot))
    assert back is not None, f"{name}: the engine could not read back the state it wrote"
    return back


def fired_at(rule: RuleBase, snaps: list[FlowGex]) -> list[int]:
    return [i for i, _ in run(rule, snaps)]
