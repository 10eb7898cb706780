"""The due-time queue: one entry per watch target, the most overdue first.

Demand (how often each target wants polling) is decoupled from capacity (how many polls the
workers can run): a target is never "skipped", it is simply served later, and under overload
every target is served in turn. Pure data structure, no clock of its own: callers pass `now`.

Invariants:
  - at most one live entry per key (`push` replaces; a replaced or removed entry stays in the
    heap as a tombstone and is dropped when it reaches the top, so both are O(log n));
  - ties on the due time go to the key pushed first (a sequence number), so the order is
    deterministic;
  - `pop_due(now)` returns only entries due at `now`, earliest due first.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class DueQueue(Generic[K]):
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, K]] = []
        self._live: dict[K, tuple[float, int]] = {}
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, key: object) -> bool:
        return key in self._live

    def push(self, key: K, due: float) -> None:
        """Schedule `key` at `due`, replacing any entry it already has."""
        seq = next(self._seq)
        self._live[key] = (due, seq)
        heapq.heappush(self._heap, (due, seq, key))
        if len(self._heap) > 2 * len(self._live) + 64:
            self._compact()

    def remove(self, key: K) -> bool:
        return self._live.pop(key, None) is not None

    def due_at(self, key: K) -> float | None:
        entry = self._live.get(key)
        return None if entry is None else entry[0]

    def next_due(self) -> float | None:
        """The earliest due time, or None when the queue is empty."""
        self._drop_dead()
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> K | None:
        """The most overdue key whose time has come, removed from the queue; else None."""
        self._drop_dead()
        if not self._heap or self._heap[0][0] > now:
            return None
        _due, _seq, key = heapq.heappop(self._heap)
        del self._live[key]
        return key

    def overdue(self, now: float) -> float:
        """How late the most overdue entry is at `now` (0 when nothing is late)."""
        head = self.next_due()
        return 0.0 if head is None else max(0.0, now - head)

    def _drop_dead(self) -> None:
        heap = self._heap
        while heap:
            due, seq, key = heap[0]
            if self._live.get(key) == (due, seq):
                return
            heapq.heappop(heap)

    def _compact(self) -> None:
        # many replaced entries (a reload, a market open re-spreading every target): rebuild so
        # the heap does not grow with tombstones
        self._heap = [(due, seq, key) for key, (due, seq) in self._live.items()]
        heapq.heapify(self._heap)
