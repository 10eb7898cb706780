"""The rules over a sequence of snapshots with the rule state in memory: what `replay` and
the outcome statistics run (the live path keeps its state in Redis, `commit.py`).

Ids equal the live ones for the same history, because everything in an event derives from the
rule, the snapshot and the state; a stream's first snapshot never fires, as for a new daemon.
This module does no I/O.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from gex_alertd.model import FlowGex
from gex_alertd.rules.base import RuleBase
from gex_alertd.rules.columns import StrikeColumns, attach
from gex_alertd.rules.engine import Emitted, Engine, RuleSlot
from gex_alertd.rules.registry import columns_only

StreamKey = tuple[str, str | None]  # (symbol, expiry filter)


@dataclass
class _Stream:
    slots: dict[str, RuleSlot] = field(default_factory=dict)
    prev: FlowGex | None = None
    prev_view: StrikeColumns | None = None  # prev's strike columns when its rows were skipped
    last_ms: int = -1


@dataclass
class Stats:
    snapshots: int = 0
    skipped: int = 0  # repeats or out-of-order as_of (the live path would refuse them too)
    bad: int = 0  # undecodable lines or entries
    alerts: Counter[tuple[str, str]] = field(default_factory=Counter)
    suppressed: Counter[tuple[str, str]] = field(default_factory=Counter)


class Replayer:
    """Feeds snapshots through the engine, one in-memory state per (symbol, expiry)."""

    def __init__(self, rules: list[RuleBase]):
        self.engine = Engine(rules)
        # every rule reads strike data through `rules.columns` only: the reader may skip rows
        self.columns_only = columns_only(rules)
        self.streams: dict[StreamKey, _Stream] = {}
        self.stats = Stats()

    def feed(
        self, snap: FlowGex, expiry: str | None, view: StrikeColumns | None = None
    ) -> list[Emitted]:
        """`view`: the strike columns of a snapshot decoded without rows (`strikes == []`);
        only for a Replayer with `columns_only` rules."""
        key = (snap.symbol, expiry)
        st = self.streams.get(key)
        if st is None:
            st = self.streams[key] = _Stream()
        ms = snap.as_of_ms
        if ms <= st.last_ms:
            self.stats.skipped += 1
            return []
        # attached right before the (synchronous) evaluation: nothing can evict them between
        if st.prev is not None and st.prev_view is not None:
            attach(st.prev, st.prev_view)
        if view is not None:
            attach(snap, view)
        outcome = self.engine.evaluate(st.slots, snap, st.prev, expiry)
        st.slots, st.prev, st.prev_view, st.last_ms = outcome.slots, snap, view, ms
        self.stats.snapshots += 1
        for em in outcome.emitted:
            self.stats.alerts[(em.event.rule, snap.symbol)] += 1
        for sup in outcome.suppressed:
            self.stats.suppressed[(sup.event.rule, snap.symbol)] += 1
        return outcome.emitted


def merge_stats(into: Stats, other: Stats) -> None:
    into.snapshots += other.snapshots
    into.skipped += other.skipped
    into.bad += other.bad
    into.alerts.update(other.alerts)
    into.suppressed.update(other.suppressed)
