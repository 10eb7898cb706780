"""Rule types by name: a new rule type is one module plus one line here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Union

from gex_alertd.rules import (
    flip_cross,
    flip_guard,
    level_proximity,
    net_gex_sign,
    oi_change,
    repositioning,
    source_failing,
    stale_data,
    threshold,
    wall_shift,
)
from gex_alertd.rules.base import RuleBase, RuleType
from gex_alertd.rules.operator import OperatorRuleType

_TYPES: tuple[RuleType[Any, Any], ...] = (
    flip_cross.RULE,
    net_gex_sign.RULE,
    oi_change.RULE,
    threshold.RULE,
    wall_shift.RULE,
    level_proximity.RULE,
    flip_guard.RULE,
    repositioning.RULE,
)

# operator rules: fed by every poll's outcome, not by snapshots (rules.operator); the engine
# and replay skip them
_OPERATOR_TYPES: tuple[OperatorRuleType[Any], ...] = (
    source_failing.RULE,
    stale_data.RULE,
)

RULE_TYPES: tuple[type[RuleBase], ...] = tuple(t.config for t in _TYPES) + tuple(
    t.config for t in _OPERATOR_TYPES
)
OPERATOR_BY_CONFIG: dict[type[RuleBase], OperatorRuleType[Any]] = {
    t.config: t for t in _OPERATOR_TYPES
}
BY_CONFIG: dict[type[RuleBase], RuleType[Any, Any]] = {t.config: t for t in _TYPES}
BY_NAME: dict[str, RuleType[Any, Any]] = {t.name: t for t in _TYPES}

# Rule types that read strike data only through `rules.columns` (never `snap.strikes`): with only
# these configured, a previous or stored snapshot may be given as its column view, no rows (the
# live commit's cache of previous snapshots, replay). A new type missing here gets full rows.
COLUMN_ONLY_TYPES = frozenset(
    {
        "flip_cross",
        "net_gex_sign",
        "oi_change",
        "threshold",
        "wall_shift",
        "level_proximity",
        "flip_guard",
        "repositioning",
    }
)


def columns_only(rules: Sequence[RuleBase]) -> bool:
    return all(type(r).__struct_config__.tag in COLUMN_ONLY_TYPES or is_operator(r) for r in rules)


def is_operator(rule: RuleBase) -> bool:
    return type(rule) in OPERATOR_BY_CONFIG


def operator_type(rule: RuleBase) -> OperatorRuleType[Any]:
    return OPERATOR_BY_CONFIG[type(rule)]


def rule_type(rule: RuleBase) -> RuleType[Any, Any]:
    return BY_CONFIG[type(rule)]


def rule_config_union() -> Any:
    return Union[RULE_TYPES]  # noqa: UP007 - built at run time from the registry
