"""The tests' own server processes (redis-server, Alertmanager, cluster nodes): wait until
one is ready, stop one, serve one to a fixture."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol, TypeVar

import pytest


class Server(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...


S = TypeVar("S", bound=Server)


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


def serving(make: Callable[[], S]) -> Iterator[S]:
    """A fixture's server: made and started, stopped after the test. A missing binary or a
    start that fails is the test's failure with the reason (never a skip), and what did start
    is stopped."""
    server = None
    try:
        server = make()
        server.start()
    except RuntimeError as exc:
        if server is not None:
            server.stop()
        pytest.fail(str(exc), pytrace=False)
    yield server
    server.stop()
