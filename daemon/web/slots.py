"""A bound on the live page's heavy work, counting work that goes on in a worker thread after
its request is gone.

The ops server cancels a handler whose client disconnects (handler_cancellation), but a thread
cannot be cancelled: a slot released by the cancelled handler let a new frame start beside the
render still running in its thread, so up to the thread pool's size ran at once instead of the
bound. Here a slot handed to a thread is released when the thread returns, whoever waits for it.
This module never decides what is heavy; the caller takes a slot around it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

T = TypeVar("T")


class Slot:
    """One taken slot; `to_thread` runs the slot's work in a worker thread."""

    def __init__(self) -> None:
        self.thread: asyncio.Future[Any] | None = None

    async def to_thread(self, fn: Callable[[], T]) -> T:
        """`asyncio.to_thread`, with the slot kept until `fn` returns even if the caller is
        cancelled meanwhile (its result or error is then dropped)."""
        assert self.thread is None  # one thread per slot: the slot counts one
        loop = asyncio.get_running_loop()
        ctx = contextvars.copy_context()
        thread: asyncio.Future[T] = loop.run_in_executor(None, ctx.run, fn)
        self.thread = thread
        return await asyncio.shield(thread)


class Slots:
    def __init__(self, n: int) -> None:
        self._free = asyncio.Semaphore(n)

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[Slot]:
        """A slot for the block; released at its end, or when the thread it started returns."""
        await self._free.acquire()
        taken = Slot()
        try:
            yield taken
        finally:
            if taken.thread is None:
                self._free.release()
            else:  # done already: the callback runs at the loop's next turn
                taken.thread.add_done_callback(self._thread_done)

    def _thread_done(self, thread: asyncio.Future[Any]) -> None:
        if not thread.cancelled():
            thread.exception()  # retrieved: its caller is gone, and the error with it
        self._free.release()
