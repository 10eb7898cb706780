"""The tests' own server processes (redis-server, Alertmanager, cluster nodes): wait until
one is ready, stop one."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path


def until(
    check: Callable[[], object],
    what: str,
    timeout: float,
    *,
    proc: subprocess.Popen[bytes] | None = None,
    log: Path | None = None,
    errors: tuple[type[BaseException], ...] = (OSError,),
    poll_s: float = 0.02,
) -> None:
    """Poll `check` until it returns true; one of `errors` counts as not yet. RuntimeError
    naming `what` after `timeout` s, or at once, with the tail of `log`, when `proc` exits
    first (a server that will never answer)."""
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log else ""
            raise RuntimeError(f"{what} exited with {proc.returncode}: {tail}")
        try:
            if check():
                return
        except errors:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"gave up after {timeout:g} s waiting for {what}")
        time.sleep(poll_s)


def stop(proc: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM, then SIGKILL after 10 s."""
    if proc and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
