"""stale_data: during market hours, the data served for a symbol is older than `max_age`.

Judged on every poll (an operator rule, `rules.operator`): the snapshot's `as_of` and each
timestamp of the served `data_as_of` against `max_age`, or against the feed's own limit in
`feeds` (`flow_feed: 1m`; `0` turns a feed's check off). `oi_feed` refreshes once a day, so its
limit is `1d` unless `feeds` names it (`oi_feed: 20h`: "not refreshed today"). Fires
once when the data becomes stale, and sends a resolved event when every checked timestamp is
fresh again.

Edge cases:
  - market closed (`watch.market_hours: nyse` outside the session, or the rule's
    `active_hours`): nothing is judged and nothing changes; an episode open at the close
    stays open and resolves on the first fresh poll of the next session;
  - a poll that fails is judged on the last snapshot seen (the age keeps growing: a source
    that stops answering makes the data stale too); before any snapshot was seen (a restart
    into a failing source) nothing is judged: `source_failing` covers that;
  - a repeated `as_of` (the provider's cache) counts: it is what the source is serving;
  - no `data_as_of` in the response: only `as_of` is judged;
  - a feed whose timestamp is null, absent from `data_as_of` or unparseable (missing): not
    judged with `missing: ignore` (the default: the provider withholds some feeds for some
    symbols, e.g. no futures feed for an equity), listed as stale with `missing: stale`;
  - a timestamp in the future (clocks apart): age 0, fresh;
  - a feed the provider adds later is judged like the documented ones, against `max_age`;
    an event lists at most 20 stale feeds (and says how many more), names cut at 64 characters.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

import msgspec

from gex_alertd.model import FEEDS, as_ms
from gex_alertd.rules.base import RuleBase
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

# the settled OI is published once a day (the morning OCC figure): judged against a day unless
# the rule says otherwise, so `max_age: 2m` does not make it stale every morning
DEFAULT_LIMITS = {"oi_feed": 86400.0}
# feeds listed in an event: a response naming thousands of feeds (hostile or broken) must not
# make an event of the same size
MAX_LISTED = 20


class StaleData(RuleBase, tag="stale_data", kw_only=True):
    max_age: Duration = Duration(300.0)
    feeds: dict[str, Duration] = msgspec.field(default_factory=dict)  # per feed; 0 = unchecked
    missing: Literal["ignore", "stale"] = "ignore"

    def problems(self) -> list[tuple[str, str]]:
        out = super().problems()
        if self.max_age <= 0:
            out.append(("max_age", f"must be > 0, got {self.max_age:g}s"))
        for name in self.feeds:
            if name != "as_of" and name not in FEEDS:
                known = ", ".join(("as_of", *FEEDS))
                out.append((f"feeds.{name}", f"unknown feed (known: {known})"))
        return out

    def limit(self, feed: str) -> float:
        if feed in self.feeds:
            return float(self.feeds[feed])
        return DEFAULT_LIMITS.get(feed, float(self.max_age))


class Stale(msgspec.Struct, frozen=True):
    feed: str  # `as_of` or a data_as_of feed
    age_s: float | None  # None: the timestamp is missing
    max_age_s: float


def _parse(ts: str | None) -> int | None:
    if not ts:
        return None
    try:
        parsed = datetime.fromisoformat(ts)
    except ValueError:
        return None
    return as_ms(parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC))


def stale_feeds(rule: StaleData, obs: Observation) -> list[Stale]:
    """Every checked timestamp that is too old (or missing, with `missing: stale`)."""
    assert obs.as_of_ms is not None
    stamps: dict[str, int | None] = {"as_of": obs.as_of_ms}
    served = obs.data_as_of
    if served is not None:
        stamps.update({name: _parse(ts) for name, ts in served.items()})
        # a feed the rule names but the response leaves out is missing too
        stamps.update({name: None for name in rule.feeds if name not in stamps})
    out = []
    for name, ms in stamps.items():
        limit = rule.limit(name)
        if limit <= 0:
            continue
        if ms is None:
            if rule.missing == "stale":
                out.append(Stale(name, None, limit))
            continue
        age = max(0.0, (obs.now_ms - ms) / 1000)
        if age > limit:
            out.append(Stale(name, age, limit))
    return out


def _describe(s: Stale) -> str:
    feed = s.feed[:64]  # a name from the provider: bounded in the summary
    if s.age_s is None:
        return f"{feed} missing"
    return f"{feed} {fmt_age(s.age_s)} old (max {fmt_age(s.max_age_s)})"


def observe(
    rule: StaleData, state: Episode | None, obs: Observation
) -> tuple[Episode, list[OpFired]]:
    old = state if state is not None else Episode()
    if not obs.market_open or outside_hours(rule, obs) or obs.as_of_ms is None:
        return old, []
    stale = stale_feeds(rule, obs)
    as_of = iso_ms(obs.as_of_ms)
    if not stale:
        took = fmt_age((obs.now_ms - old.since_ms) / 1000) if old.since_ms is not None else ""
        summary = f"{obs.symbol} data is fresh again (stale for {took})"
        return recover(old, summary, {"as_of": as_of, "stale_for": took})
    since = old.since_ms if old.since_ms is not None else obs.now_ms
    shown = "; ".join(_describe(s) for s in stale[:3])
    more = f" (+{len(stale) - 3} more)" if len(stale) > 3 else ""
    extra = len(stale) - MAX_LISTED
    more_listed = f" (+{extra} more)" if extra > 0 else ""
    details = {
        "stale_feeds": ", ".join(s.feed[:64] for s in stale[:MAX_LISTED]) + more_listed,
        "oldest": shown,
        "as_of": as_of,
        "as_of_age_s": round((obs.now_ms - obs.as_of_ms) / 1000, 1),
        "stale": [msgspec.structs.asdict(s) for s in stale[:MAX_LISTED]],
    }
    return enter(
        rule, old, since, obs.now_ms, f"{obs.symbol} data is stale: {shown}{more}", details
    )


RULE = OperatorRuleType(StaleData, observe)
