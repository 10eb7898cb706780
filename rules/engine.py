"""Runs every applicable rule on one snapshot: the code shared by the live commit and replay.

Pure: no I/O, no clock. Everything in an AlertEvent derives from the rule, the snapshot and the
stored rule state, so replaying a history gives byte-identical events to the live path:
  - `id` hashes (rule, symbol, expiry, as_of ms[, strikes]);
  - `fired_at` is the snapshot's `as_of` (the moment the data implied the alert; a live
    wall-clock time would make replay differ from live);
  - cooldown and active_hours are judged on `as_of`, not on the wall clock;
  - every event's details carry the snapshot's levels (`rules.levels.details`): regime, flip
    distance, call wall, put wall.
An alert suppressed by cooldown or active_hours still advances the rule's state: the change
has been seen, and it must not fire later (outside the window) as if it were new.
A resolved event (`Fired.status`) closes what the rule's last firing event opened: it is sent
exactly when that firing event was sent (`RuleSlot.open`), whatever the cooldown or
active_hours (a receiver's incident must close), and it does not start a cooldown.
"""

from __future__ import annotations

import hashlib
from typing import Any, NamedTuple

import msgspec

from gex_alertd.model import FIRING, AlertEvent, AlertStatus, FlowGex, iso_utc, with_rows
from gex_alertd.rules.base import Fired, RuleBase, RuleType
from gex_alertd.rules.columns import FIELDS
from gex_alertd.rules.levels import details as level_details
from gex_alertd.rules.registry import columns_only, is_operator, rule_type


class RuleSlot(msgspec.Struct, array_like=True):
    """One rule's stored state for one (symbol, expiry)."""

    type: str
    last_fired_ms: int | None
    state: Any
    # the rule's last firing event was sent (not suppressed), so its resolved event is sent;
    # a slot stored before this field existed reads True: the rule's own state decides, as then
    open: bool = True


def _stored_slot(state: type) -> type[msgspec.Struct]:
    """RuleSlot with the rule's state type, for decoding (the type is known only at run time);
    a stored slot without `open` (an older layout) decodes with its default."""
    fields: list[tuple[str, Any] | tuple[str, Any, Any]] = [
        ("type", str),
        ("last_fired_ms", int | None),
        ("state", state),
        ("open", bool, True),
    ]
    return msgspec.defstruct("StoredSlot", fields, array_like=True)


class Emitted(msgspec.Struct, frozen=True):
    event: AlertEvent
    channels: list[str]
    cooldown_ms: int


class Suppressed(msgspec.Struct, frozen=True):
    event: AlertEvent
    reason: str  # "cooldown" | "active_hours" | "firing_not_sent" (a resolved event)


class Outcome(msgspec.Struct):
    slots: dict[str, RuleSlot]  # the new state of every rule that ran
    emitted: list[Emitted]
    suppressed: list[Suppressed]


def alert_id(
    rule: str,
    symbol: str,
    expiry: str | None,
    as_of_ms: int,
    strikes: tuple[float, ...] = (),
    extra: str = "",
    status: AlertStatus = FIRING,
) -> str:
    """Deterministic: the same inputs give the same id in live, replay and on redelivery.
    A resolved event's id also hashes its status, so it never equals a firing id (a firing
    and a resolved event on one snapshot stay two alerts); firing ids are as they always were."""
    key = f"{rule}\x1f{symbol}\x1f{expiry or ''}\x1f{as_of_ms}"
    if strikes:
        key += "\x1f" + ",".join(f"{s!r}" for s in strikes)
    if extra:
        key += "\x1f" + extra
    if status != FIRING:
        key += "\x1f" + status
    return "al_" + hashlib.blake2b(key.encode(), digest_size=12).hexdigest()


_encoder = msgspec.msgpack.Encoder()


class _Shared(NamedTuple):
    """The part of an event that is the snapshot's: its as_of (ISO) and its levels' details
    (each event gets its own dict made from these)."""

    as_of: str
    levels: dict[str, Any]


class _Plan(NamedTuple):
    rule: RuleBase
    name: str
    type: RuleType[Any, Any]
    type_name: str
    reads_rows: bool  # given the rows of a rowless snapshot (`with_rows`)


class Engine:
    def __init__(self, rules: list[RuleBase]):
        # operator rules (stale_data, source_failing) are fed by polls, not snapshots
        self.rules = [r for r in rules if not is_operator(r)]
        self._types: dict[str, RuleType[Any, Any]] = {r.name: rule_type(r) for r in self.rules}
        # rule types that read `snap.strikes`: given the rows of a rowless snapshot (the live
        # poll path drops them, model.rowless); the others read the strike matrix's columns
        self._reads_rows = {r.name for r in self.rules if not columns_only([r])}
        self._stored = {t.name: _stored_slot(t.state) for t in self._types.values()}
        self._decoders = {name: msgspec.msgpack.Decoder(st) for name, st in self._stored.items()}
        self._by_symbol: dict[str, list[RuleBase]] = {}
        self._rule_sets: dict[tuple[int, ...], list[RuleBase]] = {}  # one list per distinct set
        self._needs_prev: dict[str, bool] = {}
        self._needs_settled: dict[str, bool] = {}
        # per rule, what `evaluate` looks up for it on every snapshot, looked up once
        self._plans = {
            r.name: _Plan(
                r, r.name, self._types[r.name], self._types[r.name].name, r.name in self._reads_rows
            )
            for r in self.rules
        }
        # per distinct rule set (`applicable` shares one list per set, kept as long as the
        # engine), not per symbol: 5,000 symbols hold no list of their own
        self._plan_sets: dict[int, list[_Plan]] = {}

    def _plans_for(self, symbol: str) -> list[_Plan]:
        rules = self.applicable(symbol)
        found = self._plan_sets.get(id(rules))
        if found is None:
            found = self._plan_sets[id(rules)] = [self._plans[r.name] for r in rules]
        return found

    def applicable(self, symbol: str) -> list[RuleBase]:
        found = self._by_symbol.get(symbol)
        if found is None:
            which = tuple(i for i, r in enumerate(self.rules) if r.applies_to(symbol))
            found = self._rule_sets.get(which)
            if found is None:
                found = self._rule_sets[which] = [self.rules[i] for i in which]
            self._by_symbol[symbol] = found
        return found

    def needs_prev(self, symbol: str) -> bool:
        found = self._needs_prev.get(symbol)
        if found is None:  # asked several times per commit: worked out once per symbol
            found = self._needs_prev[symbol] = any(
                self._types[r.name].needs_prev(r) for r in self.applicable(symbol)
            )
        return found

    @property
    def prev_columns(self) -> tuple[str, ...]:
        """The columns of a previous snapshot's view any rule here reads (`RuleType.
        prev_columns`), in `FIELDS` order; "strike" always (a kept view's length)."""
        wanted = {"strike"}
        for r in self.rules:
            t = self._types[r.name]
            if t.needs_prev(r):
                wanted.update(t.prev_columns)
        return tuple(f for f in FIELDS if f in wanted)

    def needs_settled(self, symbol: str) -> bool:
        """Whether a rule on `symbol` reads the day's settled profile (fetched at the edge)."""
        found = self._needs_settled.get(symbol)
        if found is None:
            found = self._needs_settled[symbol] = any(
                self._types[r.name].needs_settled for r in self.applicable(symbol)
            )
        return found

    # --- state (de)serialisation: one hash field per rule name ---------------------------

    def encode_slot(self, slot: RuleSlot) -> bytes:
        return _encoder.encode(slot)

    def stored_slot(self, rule: str) -> type[msgspec.Struct]:
        """The struct a slot of `rule` decodes into (RuleSlot's layout, its state typed): for
        a decoder of several slots at once."""
        return self._stored[self._types[rule].name]

    def decode_slot(self, rule: str, raw: bytes) -> RuleSlot | None:
        """None when the stored state is unusable (rule type changed, older layout): the rule
        then starts over as if it had never seen the symbol, which never fires."""
        t = self._types.get(rule)
        if t is None:
            return None
        try:
            stored: Any = self._decoders[t.name].decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None
        if stored.type != t.name:
            return None
        return RuleSlot(stored.type, stored.last_fired_ms, stored.state, stored.open)

    # --- evaluation ----------------------------------------------------------------------

    def evaluate(
        self,
        slots: dict[str, RuleSlot],
        snap: FlowGex,
        prev: FlowGex | None,
        expiry: str | None,
    ) -> Outcome:
        expiry = expiry if expiry is not None else snap.expiry
        as_of_ms = snap.as_of_ms
        out = Outcome({}, [], [])
        whole: tuple[FlowGex, FlowGex | None] | None = None
        # what every event of this snapshot shares (its as_of, its levels), worked out at its
        # first event, once however many rules fire on it
        shared: _Shared | None = None
        for rule, name, t, type_name, reads_rows in self._plans_for(snap.symbol):
            slot = slots.get(name)
            seen, seen_prev = snap, prev
            if reads_rows:
                if whole is None:
                    whole = with_rows(snap), None if prev is None else with_rows(prev)
                seen, seen_prev = whole
            if slot is None:
                state, fired = t.evaluate(rule, None, seen, seen_prev)
                # the first snapshot a rule sees never fires
                out.slots[name] = RuleSlot(type_name, None, state, False)
                continue
            state, fired = t.evaluate(rule, slot.state, seen, seen_prev)
            if not fired:
                out.slots[name] = RuleSlot(type_name, slot.last_fired_ms, state, slot.open)
                continue
            last, is_open = slot.last_fired_ms, slot.open
            if shared is None:
                shared = _Shared(iso_utc(snap.as_of), level_details(snap))
            for f in fired:
                event = self._event(rule, t, f, snap, expiry, as_of_ms, shared)
                if f.status != FIRING:
                    if is_open:
                        out.emitted.append(Emitted(event, list(rule.channels), 0))
                    else:
                        out.suppressed.append(Suppressed(event, "firing_not_sent"))
                    is_open = False
                    continue
                reason = self._suppressed(rule, snap, as_of_ms, last)
                if reason:
                    out.suppressed.append(Suppressed(event, reason))
                    is_open = False  # the last firing was not sent: nothing to resolve
                    continue
                last, is_open = as_of_ms, True
                out.emitted.append(Emitted(event, list(rule.channels), int(rule.cooldown * 1000)))
            out.slots[name] = RuleSlot(type_name, last, state, is_open)
        return out

    @staticmethod
    def _suppressed(rule: RuleBase, snap: FlowGex, as_of_ms: int, last: int | None) -> str | None:
        if rule.active_hours is not None and not rule.active_hours.contains(snap.as_of):
            return "active_hours"
        # the boundary itself is out of cooldown: `10m` means the next alert may come at +10m
        if last is not None and rule.cooldown > 0 and as_of_ms - last < rule.cooldown * 1000:
            return "cooldown"
        return None

    @staticmethod
    def _event(
        rule: RuleBase,
        t: RuleType[Any, Any],
        f: Fired,
        snap: FlowGex,
        expiry: str | None,
        ms: int,
        shared: _Shared,
    ) -> AlertEvent:
        as_of = shared.as_of
        return AlertEvent(
            id=alert_id(rule.name, snap.symbol, expiry, ms, f.strikes, f.key, f.status),
            rule=rule.name,
            type=t.name,
            symbol=snap.symbol,
            expiry=expiry,
            severity=rule.severity,
            as_of=as_of,
            fired_at=as_of,
            summary=f.summary,
            status=f.status,
            # the levels first, so a rule's own key of the same name (a wall rule's
            # `call_wall`) is what the alert says
            details={**shared.levels, **f.details},
        )
