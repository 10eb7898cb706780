"""Wait for a condition, not for a fixed time.

Tests run on busy CI machines, so how long something takes is never asserted from above: a
test waits for the condition itself, polling it, and only a bound that a healthy run never gets
near (WAIT_S) turns a hang into a failure that names what it was waiting for.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable

WAIT_S = 60.0  # generous on purpose: reached only when the awaited thing never happens
POLL_S = 0.02

Check = Callable[[], bool | Awaitable[bool]]


async def eventually(check: Check, what: str, timeout_s: float = WAIT_S) -> None:
    """Poll `check` (sync or async) until it returns true; AssertionError naming `what` after
    `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        ok = check()
        if inspect.isawaitable(ok):
            ok = await ok
        if ok:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout_s:g} s waiting for {what}")
        await asyncio.sleep(POLL_S)


def wait_until(check: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    """`eventually` for synchronous tests (subprocesses, threads)."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout_s:g} s waiting for {what}")
        time.sleep(POLL_S)
