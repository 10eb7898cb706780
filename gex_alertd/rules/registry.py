"""Rule types by name: a new rule type is one module plus one line here."""

from __future__ import annotations

from typing import Any, Union

from gex_alertd.rules.base import RuleBase
from gex_alertd.rules.flip_cross import FlipCross

RULE_TYPES: tuple[type[RuleBase], ...] = (FlipCross,)


def rule_config_union() -> Any:
    return Union[RULE_TYPES]  # noqa: UP007 - built at run time from the registry
