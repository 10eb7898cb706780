"""sd_notify over `$NOTIFY_SOCKET`: readiness, watchdog, status and reload/stop notices for systemd.

A small module of our own rather than a dependency: the protocol is one datagram per message,
and the maintained packages either ignore send errors or raise them, while a service must log
a broken notify socket once and carry on. A failure never disables later sends: the socket can
be briefly full (EAGAIN) or gone during `systemctl daemon-reexec`, and giving up on it would
turn a transient error into a watchdog kill.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time

import structlog

log = structlog.get_logger(__name__)


def _address(raw: str) -> str | bytes:
    # "@name" is Linux's abstract namespace: a leading NUL byte instead of a filesystem path
    if raw.startswith("@"):
        return b"\0" + raw[1:].encode()
    return raw


class SystemdNotifier:
    """Sends state changes to systemd; every method is a no-op when not run under Type=notify."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self._addr = env.get("NOTIFY_SOCKET") or None
        self._watchdog_usec = env.get("WATCHDOG_USEC")
        self._watchdog_pid = env.get("WATCHDOG_PID")
        self._sock: socket.socket | None = None
        self._failing = False  # inside a run of failed sends: logged at its start and end only

    @property
    def enabled(self) -> bool:
        return self._addr is not None

    def notify(self, *fields: str) -> bool:
        """Send one datagram of newline-separated `KEY=value` fields; True if it was sent."""
        if self._addr is None:
            return False
        try:
            if self._sock is None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                sock.setblocking(False)
                try:
                    sock.connect(_address(self._addr))
                except OSError:
                    sock.close()
                    raise
                self._sock = sock
            self._sock.send("\n".join(fields).encode())
        except OSError as exc:
            # once per run of failures: a dead socket would otherwise flood the journal every ping
            if not self._failing:
                self._failing = True
                log.error("sd_notify failed; will keep trying", socket=self._addr, error=str(exc))
            self.close()  # reconnect on the next message (the socket may have been recreated)
            return False
        if self._failing:
            self._failing = False
            log.info("sd_notify works again", socket=self._addr)
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def reloading(self) -> bool:
        # systemd >= 253 (Type=notify-reload) needs the monotonic timestamp to match the reply
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def watchdog_interval(self) -> float | None:
        """Seconds between pings (half of WatchdogSec), or None when no watchdog is set for us."""
        if self._addr is None or not self._watchdog_usec:
            return None
        if self._watchdog_pid:
            try:
                if int(self._watchdog_pid) != os.getpid():
                    return None
            except ValueError:
                return None
        try:
            usec = int(self._watchdog_usec)
        except ValueError:
            log.warning("ignoring malformed WATCHDOG_USEC", value=self._watchdog_usec)
            return None
        if usec <= 0:
            return None
        return usec / 2_000_000

    async def run_watchdog(self, stop_event: asyncio.Event) -> None:
        """Ping from the event loop itself: a stuck loop misses pings and systemd restarts it."""
        interval = self.watchdog_interval()
        if interval is None:
            return
        while not stop_event.is_set():
            self.watchdog()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop_event.wait(), timeout=interval)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
