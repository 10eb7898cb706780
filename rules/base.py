"""Fields every rule shares (contract: design.md "Rules") and the interface of a rule type.

A rule type is one module defining three things, registered with one line in `registry.py`:
  - a config struct (a `RuleBase` subclass with `tag="<type>"`),
  - a per-rule state struct (msgspec, small: it is stored in `gex:{SYM}:state` after every
    snapshot),
  - a pure `evaluate(rule, state, snap, prev) -> (new_state, [Fired])`.
`state` is None the first time the rule sees a (symbol, expiry): the function then only
initialises its state (the engine drops anything it would fire, as a second guard).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, time
from typing import Any, Generic, Literal, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from gex_alertd.model import FIRING, AlertStatus, FlowGex
from gex_alertd.rules.columns import FIELDS
from gex_alertd.rules.duration import Duration

Severity = Literal["info", "warning", "critical"]
SEVERITY_ORDER: dict[str, int] = {"info": 0, "warning": 1, "critical": 2}
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HHMM = re.compile(r"([01]?\d|2[0-3]):([0-5]\d)")


def parse_hhmm(text: str) -> time | None:
    m = _HHMM.fullmatch(text.strip())
    return time(int(m.group(1)), int(m.group(2))) if m else None


class ActiveHours(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """A daily window in the exchange time zone; `end` before `start` spans midnight.

    `days` names the day the window *opens*: `{start: "22:00", end: "02:00", days: [mon]}`
    covers Monday 22:00 to Tuesday 02:00. `start == end` means the whole day.
    """

    start: str = "09:30"
    end: str = "16:00"
    tz: str = "America/New_York"
    days: list[Weekday] = msgspec.field(default_factory=lambda: ["mon", "tue", "wed", "thu", "fri"])

    def problems(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for key in ("start", "end"):
            if parse_hhmm(getattr(self, key)) is None:
                out.append((key, f"expected HH:MM (24h), got {getattr(self, key)!r}"))
        try:
            ZoneInfo(self.tz)
        except (ZoneInfoNotFoundError, ValueError):
            out.append(("tz", f"unknown time zone {self.tz!r}"))
        if not self.days:
            out.append(("days", "at least one day (the window would never open)"))
        return out

    def contains(self, ts: datetime) -> bool:
        start, end = parse_hhmm(self.start), parse_hhmm(self.end)
        assert start is not None and end is not None
        local = ts.astimezone(ZoneInfo(self.tz))
        t = local.time().replace(tzinfo=None)
        day = WEEKDAYS[local.weekday()]
        if start == end:
            return day in self.days
        if start < end:
            return start <= t < end and day in self.days
        if t >= start:  # evening part: the window opened today
            return day in self.days
        if t < end:  # morning part: the window opened yesterday
            return WEEKDAYS[(local.weekday() - 1) % 7] in self.days
        return False


class RuleBase(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, tag_field="type"):
    name: str
    symbols: list[str] | Literal["*"] = "*"
    channels: list[str] = []
    severity: Severity = "warning"
    cooldown: Duration = Duration(0.0)
    active_hours: ActiveHours | None = None
    # after these durations, a follow-up notification with what spot did (gex_alertd.outcomes)
    follow_up: list[Duration] = []

    def applies_to(self, symbol: str) -> bool:
        if self.symbols == "*":
            return True
        up = symbol.upper()
        return any(s.upper() == up for s in self.symbols)

    @property
    def type_name(self) -> str:
        return str(type(self).__struct_config__.tag)

    def problems(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        if not self.name.strip():
            out.append(("name", "must not be empty"))
        if isinstance(self.symbols, list) and not self.symbols:
            out.append(("symbols", 'empty list: the rule would never run (use "*" for all)'))
        for i, d in enumerate(self.follow_up):
            if d <= 0:
                out.append((f"follow_up[{i}]", f"must be longer than 0, got {d:g}"))
        return out


class Fired(msgspec.Struct, frozen=True):
    """What a rule reports; the engine turns it into an AlertEvent (id, cooldown, routing)."""

    summary: str
    details: dict[str, Any]
    strikes: tuple[float, ...] = ()  # part of the alert id when the rule is per strike
    key: str = ""  # part of the alert id when one rule fires twice on one snapshot
    # `resolved` when a rule with a resolved state recovers: same group key, its own id
    status: AlertStatus = FIRING


R = TypeVar("R", bound=RuleBase)
S = TypeVar("S", bound=msgspec.Struct)


@dataclass(frozen=True)
class RuleType(Generic[R, S]):
    config: type[R]
    state: type[S]
    evaluate: Callable[[R, S | None, FlowGex, FlowGex | None], tuple[S, list[Fired]]]
    needs_prev: Callable[[R], bool] = lambda rule: False
    # the columns (`rules.columns.FIELDS`) of the previous snapshot's view that `evaluate` reads
    # when `needs_prev`: of a previous snapshot the live commit keeps only these (the others
    # come back NaN) and its scalar fields (not `data_as_of`). All of them unless a type says
    prev_columns: tuple[str, ...] = FIELDS
    # reads the day's settled profile, which the edge attaches to the snapshot beforehand
    # (`repositioning.attach_settled`): live, the commit's caller; replay, from Redis
    needs_settled: bool = False

    @property
    def name(self) -> str:
        return str(self.config.__struct_config__.tag)


def sign(x: float) -> int:
    return (x > 0) - (x < 0)


def fmt_money(x: float) -> str:
    """Dollar GEX in a readable unit: -1.25bn, 310.4m."""
    a = abs(x)
    for div, unit in ((1e12, "tn"), (1e9, "bn"), (1e6, "m"), (1e3, "k")):
        if a >= div:
            return f"{x / div:+.2f}{unit}"
    return f"{x:+.0f}"
