"""Which outbox streams this daemon's channels read, and which may hold something new.

Each symbol has its own outbox (`gex:{SYM}:alerts`, see notify/outbox.py), so delivery reads a
set of streams instead of one. The set: the outboxes of the watched symbols this daemon owns
(rendezvous hashing over the live members, on the outbox's name: ownership.owner), the
operator outbox `gex:{*}:alerts` when this daemon owns it, and outboxes found by SCAN that no
watched symbol names (a symbol dropped from the watchlist with alerts still owed, or one
`replay --send` wrote for) under the same rule. With no membership (`gex-alertd notify
worker`) every stream is read: consumer groups keep each entry with one consumer anyway.

Reading 5,000 streams on every turn would cost more than everything else the daemon does, so a
channel reads all its streams only on a sweep (every few seconds) and otherwise only the
streams it was poked for: the daemon's own commits poke the symbol they enqueued alerts for, so
an alert is on its way within the same loop turn. Alerts written by others (another daemon's
commit for an expiry it owns, the CLI's `replay --send` or `outbox retry`, a follow-up) wait
for the next sweep.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from gex_alertd import keys

SWEEP_S = 2.0  # every owned stream read at least this often (one node)
CLUSTER_STREAMS_PER_S = 500  # a cluster reads one stream per command: spread a large sweep


class Pokes:
    """One reader's view: streams poked since it last looked, and an event to wait on."""

    def __init__(self) -> None:
        self.dirty: set[str] = set()
        self.event = asyncio.Event()

    def take(self) -> list[str]:
        out = sorted(self.dirty)
        self.dirty.clear()
        self.event.clear()
        return out


class OutboxStreams:
    def __init__(
        self,
        symbols: Iterable[str],
        owns: Callable[[str], bool] | None = None,
        *,
        cluster: bool = False,
    ) -> None:
        self.owns = owns
        self.cluster = cluster
        # a dict, not a set: 5,000 keys are a 104 KB dict but a 524 KB set (issue 12)
        self.watched: dict[str, None] = dict.fromkeys(keys.outbox(s) for s in symbols)
        self.found: set[str] = set()  # seen by SCAN, not watched
        # outbox keys that hold another type (made by hand, or by another program sharing the
        # Redis), with that type: read by no channel until they are streams again. One such
        # key in a multi-stream read (XREADGROUP, the autoclaim script) failed it whole, and
        # no channel delivered anything for any symbol (notify.outbox.refuse_wrong_types)
        self.refused: dict[str, str] = {}
        self.types_check_after = 0.0  # monotonic: refuse_wrong_types found none before it
        self._readers: list[Pokes] = []
        self.version = 0  # bumped when the set may have changed (members, watchlist, SCAN)
        self._owned: tuple[int, list[str]] = (-1, [])  # (version, streams): hashing 5,000
        # names per loop turn would cost more than the reads

    def set_symbols(self, symbols: Iterable[str]) -> None:
        self.watched = dict.fromkeys(keys.outbox(s) for s in symbols)
        self.changed()

    def add_found(self, streams: Iterable[str]) -> None:
        new = set(streams) - self.watched.keys() - self.found
        if new:
            self.found |= new
            self.changed()

    def changed(self) -> None:
        """The members, the watchlist or the streams changed: readers re-read everything."""
        self.version += 1
        for r in self._readers:
            r.event.set()

    def all(self) -> list[str]:
        """Every stream known here, owned or not (the groups to create before reading)."""
        known = self.watched.keys() | self.found | {keys.outbox(keys.OPS_SYMBOL)}
        return sorted(known - self.refused.keys())

    def refuse(self, wrong: dict[str, str]) -> None:
        """These keys hold another type than a stream: leave them out of every read."""
        if wrong.items() - self.refused.items():
            self.refused.update(wrong)
            self.changed()

    def forgive(self, streams: Iterable[str]) -> None:
        """These keys are streams again (or gone): read them again."""
        back = [s for s in streams if self.refused.pop(s, None) is not None]
        if back:
            self.changed()

    def owned(self) -> list[str]:
        """The streams this daemon reads; recomputed only after `changed()` (the daemon calls
        it whenever the member list changes, which is all `owns` depends on)."""
        version, streams = self._owned
        if version != self.version:
            streams = self.all()
            if self.owns is not None:
                streams = [s for s in streams if self.owns(s)]
            self._owned = (self.version, streams)
        return streams

    def sweep_every(self, n_streams: int) -> float:
        if not self.cluster:
            return SWEEP_S
        return max(SWEEP_S, n_streams / CLUSTER_STREAMS_PER_S)

    def reader(self) -> Pokes:
        pokes = Pokes()
        self._readers.append(pokes)
        return pokes

    def drop_reader(self, pokes: Pokes) -> None:
        if pokes in self._readers:
            self._readers.remove(pokes)

    def poke(self, symbol: str) -> None:
        """Alerts were just enqueued on `symbol`'s outbox (by this process): read it now, when
        it is ours. A target of the symbol (an expiry) can be ours while its outbox is another
        daemon's: that one reads it on its sweep; two readers would lose the symbol's order."""
        stream = keys.outbox(symbol)
        if self.owns is not None and not self.owns(stream):
            return
        for r in self._readers:
            r.dirty.add(stream)
            r.event.set()
