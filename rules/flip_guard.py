"""flip_guard: a data-quality rule: the served flip is implausible or missing for too long.

Bad when either holds:
  - `far`: the flip is available and farther than `max_distance_pct` of spot from it (a flip
    hundreds of points away is a broken profile, not a trade level); unset: never;
  - `unavailable`: no usable flip (null, or `gamma_flip_status` other than `available`) for at
    least `for` (judged on `as_of`, so replay agrees), counted from the first snapshot without
    one; `for: 0` means at once.
Fires when the guard turns bad (status firing, the reason in details) and when it recovers
(status resolved, same group key). Edge cases:
  - the first snapshot is the baseline: a guard that starts bad never fires, and its recovery
    resolves nothing (only an announced problem is resolved);
  - a change of reason while bad (far -> unavailable) is not a new alert, and a snapshot
    without a usable flip never recovers the guard: far -> missing (before `for`) is still one
    open problem, and so is an outage whose `for` a reload made longer;
  - a flip coming back resets the unavailable clock; the next outage counts from zero.
Severity `warning` unless configured.
"""

from __future__ import annotations

import msgspec

from gex_alertd.model import RESOLVED, FlowGex
from gex_alertd.rules.base import Fired, RuleBase, RuleType
from gex_alertd.rules.duration import Duration
from gex_alertd.rules.levels import flip_distance_pct
from gex_alertd.rules.words import flip_status_word


class FlipGuard(RuleBase, tag="flip_guard", kw_only=True):
    max_distance_pct: float | None = None
    for_: Duration = msgspec.field(default=Duration(300.0), name="for")

    def problems(self) -> list[tuple[str, str]]:
        out = super().problems()
        if self.max_distance_pct is not None and not 0 < self.max_distance_pct < 100:
            out.append(
                (
                    "max_distance_pct",
                    f"must be > 0 and < 100 (percent of spot), got {self.max_distance_pct}",
                )
            )
        return out


class GuardState(msgspec.Struct, array_like=True):
    missing_since_ms: int | None = None  # first snapshot of the current outage
    bad: bool | None = None  # None until the first snapshot
    announced: bool = False  # the problem was reported (so its recovery resolves it)
    reason: str | None = None  # why it was bad, when it turned bad


def _reason(rule: FlipGuard, snap: FlowGex, missing_since_ms: int | None) -> str | None:
    dist = flip_distance_pct(snap)
    if dist is None:
        assert missing_since_ms is not None
        return "unavailable" if snap.as_of_ms - missing_since_ms >= rule.for_ * 1000 else None
    if rule.max_distance_pct is not None and abs(dist) > rule.max_distance_pct:
        return "far"
    return None


def evaluate(
    rule: FlipGuard, state: GuardState | None, snap: FlowGex, prev: FlowGex | None
) -> tuple[GuardState, list[Fired]]:
    old = state if state is not None else GuardState()
    since = None
    if snap.flip is None:
        since = old.missing_since_ms if old.missing_since_ms is not None else snap.as_of_ms
    reason = _reason(rule, snap, since)
    if reason is None and since is not None and old.bad:
        # still no flip: the problem goes on (it is not "back to normal" with nothing to show)
        reason = old.reason
    bad = reason is not None
    if state is None or old.bad is None:
        return GuardState(since, bad, reason=reason), []
    if bad == old.bad:
        return GuardState(since, bad, old.announced, old.reason), []
    dist = flip_distance_pct(snap)
    spot = snap.underlying_price
    details = {
        "reason": reason if bad else old.reason,
        "flip": snap.live_gamma_flip,
        "gamma_flip_status": flip_status_word(snap.gamma_flip_status),
        "spot": spot,
        "distance_pct": dist,
        "max_distance_pct": rule.max_distance_pct,
        "for_s": float(rule.for_),
        "missing_since_ms": since,
    }
    if bad:
        if dist is not None:
            what = f"flip {snap.live_gamma_flip:g} is {abs(dist):.1f} % from spot"
        else:
            what = f"no usable flip for {(snap.as_of_ms - (since or 0)) / 1000:.0f} s"
        summary = f"{snap.symbol} flip looks wrong: {what} (spot {spot:.2f})"
        return GuardState(since, True, True, reason), [Fired(summary, details)]
    new = GuardState(since, False)
    if not old.announced:
        return new, []
    summary = f"{snap.symbol} flip back to normal: {snap.flip:g} (spot {spot:.2f})"
    return new, [Fired(summary, details, status=RESOLVED)]


RULE = RuleType(FlipGuard, GuardState, evaluate)
