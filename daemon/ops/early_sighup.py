"""SIGHUP before the daemon's loop handles it: recorded, never fatal.

SIGHUP asks `gex-alertd run` for a reload, but until the event loop installs its handler
(app.Daemon.install_signal_handlers) the signal's default action ends the process, and
importing the daemon takes ~0.5 s: a reload in that time (`systemctl reload` of a unit just
(re)started, logrotate's postrotate, a config tool) killed it, and systemd counts a death by
SIGHUP as a clean exit, so `Restart=on-failure` did not bring it back. `install` is the first
thing `gex-alertd run` does (cli.py, before the heavy imports); the loop's handler then `take`s
what came meanwhile and reloads once the start is done. Only the interpreter's own start, before
any of the package runs, still has the default action.

Imports nothing but `signal`: it runs before everything else `run` loads.
"""

from __future__ import annotations

import signal
from types import FrameType

_requested = 0


def install() -> None:
    """Record SIGHUPs from now on, and let them through: a parent may have blocked it (the
    mask is inherited across exec), and a blocked SIGHUP never reaches the loop's handler."""
    signal.signal(signal.SIGHUP, _record)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})


def _record(_signum: int, _frame: FrameType | None) -> None:
    global _requested
    _requested += 1


def take() -> int:
    """The SIGHUPs recorded since `install` (or the last take), counted once."""
    global _requested
    n, _requested = _requested, 0
    return n
