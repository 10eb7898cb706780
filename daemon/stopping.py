"""Ending tasks that call Redis, whatever redis-py does with a cancel.

A cancel that lands inside a redis-py 8.1 command is often swallowed there: the command
returns as if nothing happened and the task goes on (measured: 16 of 20 cancels of a task
looping over GET, the task still `cancelling()` and running). The cause is Python 3.11's
`asyncio.wait_for`, in which redis-py's `Connection.send_packed_command` wraps every send when
a socket timeout is set (ours always is): a cancel landing after the send finished, before
wait_for's caller resumed, is dropped and the send's result returned (CPython bpo-42130;
3.12 rebuilt wait_for on `asyncio.timeout`). The same GET loop: 25 of 30 cancels swallowed
with `socket_timeout=5`, none of 30 without one. One `cancel()` followed by an unbounded wait
can therefore hang a stop for ever, and has: the live page's reader in CI.
So a task is asked first (a flag its loop checks, where it has one), and cancelled as a
fallback by `cancel_and_wait`, which cancels again until the task ends, within a bound.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

RECANCEL_S = 0.05  # a swallowed cancel is retried this often (each one lands elsewhere)
# how long cancelled tasks get to end once their grace is over: a cancel not swallowed ends a
# task at its next turn; this bounds the rare one that keeps landing inside Redis calls
CANCELLED_END_S = 5.0


async def cancel_and_wait(
    tasks: Iterable[asyncio.Task[Any]], *, timeout_s: float
) -> set[asyncio.Task[Any]]:
    """Cancel `tasks` and wait for them to end, cancelling again each RECANCEL_S while a
    cancel is swallowed, for at most `timeout_s` (at least RECANCEL_S: a cancelled task ends
    at its next turn of the loop, so a bound of 0, a stop without grace, must still wait that
    turn). Returns the tasks still running then (the caller says so in its log); their
    exceptions, cancellation included, are consumed."""
    tasks = list(tasks)
    pending = {t for t in tasks if not t.done()}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max(timeout_s, RECANCEL_S)
    while pending:
        for task in pending:
            task.cancel()
        left = deadline - loop.time()
        if left <= 0:
            break
        _done, pending = await asyncio.wait(pending, timeout=min(RECANCEL_S, left))
    for task in tasks:
        if task.done() and not task.cancelled():
            task.exception()  # retrieved: no "exception was never retrieved" at exit
    return pending


async def end_tasks(
    tasks: Iterable[asyncio.Task[Any]], *, grace_s: float
) -> tuple[set[asyncio.Task[Any]], set[asyncio.Task[Any]]]:
    """Let `tasks` end by themselves for up to `grace_s`, then `cancel_and_wait` the rest for
    CANCELLED_END_S. Returns the tasks that had to be cancelled and those still running after
    that (the caller says so in its log)."""
    running = {t for t in tasks if not t.done()}
    if not running:
        return set(), set()
    _done, pending = await asyncio.wait(running, timeout=max(0.0, grace_s))
    return pending, await cancel_and_wait(pending, timeout_s=CANCELLED_END_S)
