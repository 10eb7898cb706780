"""Ctrl-C (SIGINT) and SIGTERM stop a command where it is, every time.

asyncio.run's own SIGINT handling cancels the main task, and on Python 3.11 that cancellation
is lost whenever it lands while the task is busy (replaying, decoding): the next Redis command
goes through `asyncio.wait_for` (redis-py's socket writes), which returns the finished write's
result instead of raising the pending cancellation. Ctrl-C during `replay` or `migrate` was
ignored and the command ran to its end with exit 0; SIGTERM killed it without running a single
`finally` (connections, `--out` files).

So the CLI (`cli.py`) puts this handler on both signals for every command but the servers
(`run`, `web`, `simulate` stop on their own terms: drain, exit 0): it raises `Stopped`, a
KeyboardInterrupt, where the main thread is, as Python does without asyncio, and asyncio.run
never installs its own (it does only over the default handler). The command unwinds through its
`finally` blocks; `cli.py` says so in one line and exits 128 + the signal's number (130, 143),
as shells report a command stopped by a signal. Every command that writes is safe to stop and
run again: each write is one atomic script with a dedup key (`replay --send`, `migrate`,
`outbox retry`), and `tail` ends on Ctrl-C as its normal way out (exit 0).
"""

from __future__ import annotations

import logging
import signal
import sys
import warnings
from types import FrameType
from typing import NoReturn

import click

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stopped(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


# set by the first stop: a command that follows for ever (`tail`) ends its loop on it. The stop
# also raises where the main thread is, but when that is inside the event loop, asyncio.run
# then cancels the command's task once, and on Python 3.11 that one cancellation is lost when
# it lands as a Redis read completes (`asyncio.wait_for`): `tail` read on, and never ended
stopping = False


def _stop(signum: int, _frame: FrameType | None) -> None:
    global stopping
    stopping = True
    # A task the signal cuts short (a Redis write in flight) would still say so at the
    # interpreter's exit, "Task exception was never retrieved" with a traceback or "coroutine
    # ... was never awaited": that is the stop itself, whoever handles it (`tail` ends with 0)
    logging.getLogger("asyncio").disabled = True
    warnings.simplefilter("ignore", RuntimeWarning)
    raise Stopped(signum)


def install() -> None:
    for sig in SIGNALS:
        signal.signal(sig, _stop)


def release() -> None:
    """The defaults again (the servers install their own on their event loop)."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def exit_stopped(exc: Stopped) -> NoReturn:
    """One line and 128 + the signal."""
    name = signal.Signals(exc.signum).name
    click.echo(f"stopped by {name}", err=True)
    sys.exit(128 + exc.signum)
