"""Fields every rule shares (contract: design.md "Rules")."""

from __future__ import annotations

from typing import Literal

import msgspec

from gex_alertd.typedconfig import Duration

Severity = Literal["info", "warning", "critical"]
SEVERITY_ORDER: dict[str, int] = {"info": 0, "warning": 1, "critical": 2}


class RuleBase(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, tag_field="type"):
    name: str
    symbols: list[str] | Literal["*"] = "*"
    channels: list[str] = []
    severity: Severity = "warning"
    cooldown: Duration = Duration(0.0)

    def applies_to(self, symbol: str) -> bool:
        return self.symbols == "*" or symbol.upper() in {s.upper() for s in self.symbols}

    def problems(self) -> list[tuple[str, str]]:
        return []
