"""What `gex-alertd check` warns about: a config that is valid but will not do what it says.

A rule for a symbol nobody watches never runs; a rule whose alerts reach no channel (none
routed, or every channel's `min_severity` above the rule's severity) fires into the outbox
and nowhere else; a rule's `follow_up` while live outcomes are off sends nothing. All legal (a
watch entry or channel may be added later, a rule parked), so they are warnings: `check` exits
0 with them, and `check --strict` makes them errors. Pure: a function of the typed config.
"""

from __future__ import annotations

from gex_alertd.config import Config
from gex_alertd.rules.base import SEVERITY_ORDER


def warnings(cfg: Config) -> list[str]:
    watched = {target.symbol for target in cfg.watch.entries()}
    out: list[str] = []
    for rule in cfg.rules:
        label = f"rule {rule.name!r}"
        if isinstance(rule.symbols, list):
            unwatched = [s for s in rule.symbols if s.upper() not in watched]
            if unwatched:
                out.append(
                    f"{label}: {', '.join(unwatched)} not in watch.symbols: the rule never runs"
                    " for them"
                )
        if rule.follow_up and not cfg.outcomes.enabled:
            out.append(f"{label}: follow_up is set but outcomes.enabled is false: none is sent")
        if not rule.channels:
            out.append(f"{label}: no channels: its alerts reach nobody")
            continue
        rank = SEVERITY_ORDER[rule.severity]
        routed = [cfg.channels[name] for name in rule.channels if name in cfg.channels]
        if routed and all(rank < SEVERITY_ORDER[ch.min_severity] for ch in routed):
            out.append(
                f"{label}: severity {rule.severity} is below the min_severity of every channel"
                f" it routes to ({', '.join(rule.channels)}): its alerts reach nobody"
            )
    return out
