"""source_failing: a target's polls have failed for `for`; resolved when a poll succeeds.

Judged on every poll outcome (an operator rule, `rules.operator`). The episode starts at the
first failed poll after a success (or at the first poll the rule sees, when that fails) and
fires when failures have lasted `for`: at the first failed poll at least `for` after the start.

Edge cases:
  - 429 (rate limited) is neither a failure nor a recovery: the daemon honours Retry-After
    and the budget is the operator's choice, not a broken source;
  - 401/403 (the key is refused) and 404/400 (the watch entry can never work; the daemon
    stops polling it) fire at once, whatever `for` says: waiting would only delay the fix.
    The key is shared by every symbol, so the edge judges a 401/403 as one source-wide
    episode (symbol `*`), not one per target; any poll that works resolves it. After a
    404/400 the daemon stops polling the entry, so that episode stays open until a reload
    brings the entry back and a poll works;
  - any other error (5xx, timeout, connection refused, a malformed or invalid body) is a
    failure;
  - a repeated `as_of` is a success: the source answered;
  - `for: 0` fires on the first failure;
  - the episode's start is kept in Redis, so a restart (or another daemon taking the target)
    continues the same episode: it fires once, and resolves once.
"""

from __future__ import annotations

import msgspec

from gex_alertd.rules.base import RuleBase, Severity
from gex_alertd.rules.duration import Duration
from gex_alertd.rules.operator import (
    Episode,
    Observation,
    OperatorRuleType,
    OpFired,
    enter,
    fmt_age,
    iso_ms,
    outside_hours,
    recover,
)

IMMEDIATE = ("auth", "permanent")


class SourceFailing(RuleBase, tag="source_failing", kw_only=True):
    for_: Duration = msgspec.field(name="for", default=Duration(300.0))
    severity: Severity = "critical"  # a source down is worse than one rule's warning


def observe(
    rule: SourceFailing, state: Episode | None, obs: Observation
) -> tuple[Episode, list[OpFired]]:
    old = state if state is not None else Episode()
    if outside_hours(rule, obs) or obs.failure == "rate_limited":
        return old, []
    if obs.failure is None:
        took = fmt_age((obs.now_ms - old.since_ms) / 1000) if old.since_ms is not None else ""
        who = "Flow GEX (every symbol)" if obs.symbol == "*" else obs.symbol
        summary = f"{who} source recovered (failing for {took})"
        return recover(old, summary, {"failing_for": took})
    since = old.since_ms if old.since_ms is not None else obs.now_ms
    lasted = (obs.now_ms - since) / 1000
    if obs.failure not in IMMEDIATE and lasted < rule.for_:
        return Episode(since, old.notified, old.last_fired_ms), []
    what = f"HTTP {obs.status}" if obs.status else obs.failure
    who = "Flow GEX (every symbol)" if obs.symbol == "*" else obs.symbol
    summary = f"{who} source failing for {fmt_age(lasted)} ({what}): {obs.error}"
    details = {
        "failure": obs.failure,
        "status": obs.status,
        "error": obs.error,
        "failing_for_s": round(lasted, 1),
        "failing_since": iso_ms(since),
    }
    return enter(rule, old, since, obs.now_ms, summary, details)


RULE = OperatorRuleType(SourceFailing, observe)
