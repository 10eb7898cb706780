"""Operator rules: rules about the data source itself, fed by what each poll observed.

A snapshot rule (`rules.engine`) runs when a new snapshot is committed; an operator rule
(`stale_data`, `source_failing`) must also run when there is no snapshot at all (the poll
failed, or served the same `as_of` again), so it is fed an `Observation` of every poll instead.
Both have an episode: the bad condition starts (`since_ms`), fires once (`firing`), and when it
ends sends one `resolved` event with the same group key. Ids derive from the episode's start,
so the firing and resolved events of one episode pair up, and a daemon that re-evaluates the
same transition (a restart, another daemon) produces the same ids.

Pure: no I/O, no clock (the time is in the observation). The edge (`daemon/operator_rules.py`)
builds observations, stores the state and commits state + event atomically. Operator rules
are never replayed: they judge the wall clock and failures, which a stored stream does not hold.

Invariants shared by both types:
  - `cooldown`: an episode confirmed within `cooldown` of the last firing is tracked but not
    sent until the cooldown has passed (if it still lasts then); an episode that ends unsent
    sends no resolved event either (only a notified episode is resolved);
  - `active_hours`: outside the window an observation changes nothing;
  - the first observation a rule ever sees may fire (unlike a snapshot rule): a source that is
    already down when the daemon starts is exactly what the operator must hear about.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, Literal, TypeVar

import msgspec

from gex_alertd.model import FIRING, RESOLVED, AlertStatus, iso_utc
from gex_alertd.rules.base import RuleBase

# why a poll failed, as the edge classifies it (sources.errors): `auth` (401/403) and
# `permanent` (404, 400: the entry is disabled) are immediate, `rate_limited` (429) is neither
# a failure nor a recovery, `transient` is everything else (5xx, timeout, malformed body)
FailureKind = Literal["auth", "permanent", "rate_limited", "transient"]


class Observation(msgspec.Struct, frozen=True, kw_only=True):
    """One poll of one target as seen at `now_ms` (wall clock, ms since the epoch)."""

    symbol: str
    expiry: str | None = None
    now_ms: int
    market_open: bool = True  # the daemon's session gate (watch.market_hours)
    # the newest snapshot known for the target: this poll's (a repeat too) or, when the poll
    # failed, the last one seen; None when nothing was seen yet since the daemon started
    as_of_ms: int | None = None
    data_as_of: dict[str, str | None] | None = None
    failure: FailureKind | None = None  # None: the poll returned a valid snapshot
    error: str = ""  # the failure, redacted, for the event's details
    status: int | None = None  # the HTTP status of the failure, when there was one

    @property
    def now(self) -> datetime:
        return datetime.fromtimestamp(self.now_ms / 1000, tz=UTC)


def iso_ms(ms: int) -> str:
    return iso_utc(datetime.fromtimestamp(ms / 1000, tz=UTC))


class Episode(msgspec.Struct, array_like=True):
    """The state both operator rules keep per (rule, symbol, expiry): small, stored as is."""

    since_ms: int | None = None  # the current bad episode's start; None when all is well
    notified: bool = False  # the current episode's firing event was sent
    last_fired_ms: int | None = None  # for `cooldown`


class OpFired(msgspec.Struct, frozen=True):
    """What an operator rule reports; the edge turns it into an AlertEvent."""

    summary: str
    details: dict[str, Any]
    since_ms: int  # the episode's start: the id of both of its events derives from it
    status: AlertStatus = FIRING


R = TypeVar("R", bound=RuleBase)


@dataclass(frozen=True)
class OperatorRuleType(Generic[R]):
    config: type[R]
    observe: Callable[[R, Episode | None, Observation], tuple[Episode, list[OpFired]]]

    @property
    def name(self) -> str:
        return str(self.config.__struct_config__.tag)


def outside_hours(rule: RuleBase, obs: Observation) -> bool:
    return rule.active_hours is not None and not rule.active_hours.contains(obs.now)


def enter(
    rule: RuleBase, state: Episode, since_ms: int, now_ms: int, summary: str, details: Any
) -> tuple[Episode, list[OpFired]]:
    """The bad condition is confirmed: fire once for the episode (unless in cooldown)."""
    if state.notified:
        return state, []
    last = state.last_fired_ms
    if last is not None and rule.cooldown > 0 and now_ms - last < rule.cooldown * 1000:
        return Episode(since_ms, False, last), []
    return Episode(since_ms, True, now_ms), [OpFired(summary, details, since_ms)]


def recover(state: Episode, summary: str, details: Any) -> tuple[Episode, list[OpFired]]:
    """The condition ended: a resolved event when its firing was sent, and a clean state."""
    if state.since_ms is None:
        return state, []
    done = Episode(None, False, state.last_fired_ms)
    if not state.notified:
        return done, []
    return done, [OpFired(summary, details, state.since_ms, RESOLVED)]


def fmt_age(seconds: float) -> str:
    s = int(seconds)
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    if s < 2 * 86400:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d"
