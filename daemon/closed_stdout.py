"""A command's standard output closed early (`gex-alertd outbox list | head -1`): stop quietly.

The reader of a pipe going away is no failure of the command: Unix tools stop at their next
write, killed by SIGPIPE, with no message (the shell's status 141). Python ignores SIGPIPE, so
the write raises BrokenPipeError instead, a ConnectionError and an OSError: the commands'
handlers for Redis or the network being down caught it and reported "redis: Broken pipe" with
the status of a Redis failure (1), or a traceback. Restoring SIGPIPE's default action is no way
out: a Redis or HTTP socket closed by its peer would then kill the process too, instead of
being retried.

So the CLI (`cli.py`, the one place) guards the process's stdout: a write or flush the reader
refuses raises `OutputClosed`, a BaseException, which no `except OSError` / `except Exception`
of a command takes for something else; it unwinds the command (its `finally` blocks close its
connections and files) up to `cli.py`, which stops the way Unix tools do. Anything the command
changed before that write stays as its own code left it, as on Ctrl-C.

The long-running commands (`run`, `web`, `simulate`) are not guarded: their stdout is a log,
whose refused lines `ops/logging.py` drops and counts, never stopping the daemon.
"""

from __future__ import annotations

import io
import os
import signal
import sys
from typing import NoReturn


class OutputClosed(BaseException):
    """The reader of this process's stdout went away (EPIPE)."""


class _GuardedBuffer(io.BufferedWriter):
    """stdout's byte buffer: text written through `sys.stdout` and bytes written straight to
    `sys.stdout.buffer` both end here."""

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]  # Buffer in typeshed; the same values
        try:
            return super().write(data)
        except BrokenPipeError:
            raise OutputClosed from None

    def flush(self) -> None:
        try:
            super().flush()
        except BrokenPipeError:
            raise OutputClosed from None


def guard() -> None:
    """Put the guard on the process's stdout (not on a test runner's capture, not twice)."""
    out = sys.stdout
    if out is None or out is not sys.__stdout__ or not isinstance(out, io.TextIOWrapper):
        return
    try:
        fd = out.fileno()
        out.flush()
    except (OSError, ValueError):  # no file behind it, or stdout closed already (`>&-`)
        return
    raw = io.FileIO(fd, "w", closefd=False)
    sys.stdout = io.TextIOWrapper(
        _GuardedBuffer(raw),
        encoding=out.encoding,
        errors=out.errors,
        line_buffering=out.line_buffering,
        write_through=out.write_through,
    )


def release() -> None:
    """Take the guard off again (the servers: their stdout is a log)."""
    if _guarded():
        sys.stdout.flush()
        sys.stdout = sys.__stdout__


def _guarded() -> bool:
    out = sys.stdout
    return isinstance(out, io.TextIOWrapper) and isinstance(out.buffer, _GuardedBuffer)


def flush() -> None:
    """The rest of the output, while its refusal can still be handled (at the interpreter's
    exit it would be "Exception ignored ... BrokenPipeError" and status 120)."""
    if _guarded():
        sys.stdout.flush()


def to_devnull(fd: int) -> None:
    """Point descriptor `fd` at /dev/null: what is still buffered for it goes nowhere, and no
    later flush of it fails (OSError when /dev/null cannot be opened)."""
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, fd)
    finally:
        os.close(null)


def stop_quietly() -> NoReturn:
    """End as a Unix tool whose reader went away: no message, killed by SIGPIPE. What is left
    in stdout's buffer goes to /dev/null, so no later flush complains."""
    try:
        to_devnull(sys.__stdout__.fileno() if sys.__stdout__ else 1)
    except OSError:
        pass
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGPIPE)
    os._exit(128 + signal.SIGPIPE)  # SIGPIPE blocked by whoever started us: the same status
