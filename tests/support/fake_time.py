"""A monotonic clock and an asyncio sleep that move only when the test moves them.

Code that takes `clock` and `sleep` (e.g. `KeyLimiter`) runs on this in tests, so "no request
before the gate opens" is checked at exact instants instead of against how fast the machine
happens to schedule tasks. The test advances time to the next sleeper's deadline, then waits
until every task it expects to block is blocked again (`settled`), and only then asserts.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools

from tests.support.wait import eventually


class FakeTime:
    def __init__(self, start: float = 1000.0) -> None:
        self.t = start
        self._heap: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self.t

    async def sleep(self, delay: float) -> None:
        if delay <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._heap, (self.t + delay, next(self._seq), fut))
        await fut  # a cancelled sleeper's future is cancelled too, and skipped when woken

    @property
    def sleeping(self) -> int:
        return sum(1 for _, _, fut in self._heap if not fut.done())

    def next_deadline(self) -> float | None:
        live = [d for d, _, fut in self._heap if not fut.done()]
        return min(live) if live else None

    def advance_to_next(self) -> float:
        """Move to the earliest deadline and wake every sleeper due then; returns the time."""
        deadline = self.next_deadline()
        assert deadline is not None, "nobody is sleeping"
        self.t = max(self.t, deadline)
        while self._heap and self._heap[0][0] <= self.t:
            _, _, fut = heapq.heappop(self._heap)
            if not fut.done():
                fut.set_result(None)
        return self.t

    async def settled(self, sleepers: int, what: str) -> None:
        """Wait (in real time, generously bounded) until exactly `sleepers` tasks sleep."""
        await eventually(lambda: self.sleeping == sleepers, f"{sleepers} sleepers: {what}")
