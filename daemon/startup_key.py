"""The start-up key check: a key the upstream refuses before it ever took it stops the daemon.

flowgex-api.md: a refused key (401/403) is fatal at start-up and, once the key was taken, an
alert and a back-off (the operator rules). The first answer about the key in this run decides:
  - a 200, or an answer that looked past the key at the symbol (404, 400, a 200 whose body is
    refused), proves the key taken: refusals after it are run-time ones, never fatal;
  - a refusal before any of those is a configuration problem (the key, or its plan) that
    polling on would not mend: it is kept (the first one, when polls already out add theirs)
    and the daemon is told to stop, so `run` exits 2 naming it;
  - any other failure (the upstream down, a 5xx, an error body too large to read) says
    nothing about the key.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog

from gex_alertd.sources.errors import AuthError, BadRequest, MalformedPayload, UnknownSymbol

log = structlog.get_logger()


class StartupKey:
    def __init__(self, stop: Callable[[], None]) -> None:
        self.taken = False
        self.refused: AuthError | None = None  # what `run` raises once the daemon stopped
        self._stop = stop

    def seen(self, exc: BaseException | None) -> None:
        """One fetch's outcome (None: a snapshot)."""
        if exc is None or takes_the_key(exc):
            self.taken = True
        elif isinstance(exc, AuthError) and not self.taken:
            self._refused(exc)

    def _refused(self, exc: AuthError) -> None:
        if self.refused is not None:
            return
        self.refused = exc
        log.error(
            "upstream refused the API key at start-up; stopping (exit 2)",
            error=str(exc),
            status=exc.status,
        )
        self._stop()


def takes_the_key(exc: BaseException) -> bool:
    """The answer proves the upstream took the key: it looked past it at the symbol (404, 400),
    or sent a 200 whose body is refused. A MalformedPayload of another status is an error body
    too large or in an encoding not read: a 401's too."""
    if isinstance(exc, UnknownSymbol | BadRequest):
        return True
    return isinstance(exc, MalformedPayload) and 200 <= (exc.status or 0) < 300
