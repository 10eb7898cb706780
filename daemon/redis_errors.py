"""Redis errors on the poll/commit path, by class, and the episodes they make.

A Redis that refuses writes is not always down: at `maxmemory` with `noeviction` it answers OOM,
a replica after a failover answers READONLY, a wrong password NOAUTH/WRONGPASS. Each class
means something different to an operator, so each is named, counted
(`gexalertd_redis_errors_total{class}`) and, while it lasts, reported by `/healthz` (not ok,
with the reason). What the poller does with it:

  connection  unreachable, timed out, loading  back off, the snapshot stays pending
  auth        NOAUTH, WRONGPASS, NOPERM         back off, pending (a configuration matter)
  oom         OOM (maxmemory, noeviction)       back off, pending
  readonly    READONLY (a replica)              back off, pending
  script      the commit script failed          back off, pending (a bug or an odd Redis)
  conflict    rule state kept changing          back off, pending
  data        this snapshot can never commit    set aside to `gex:dead` with the reason, and
              (invalid stream ID, WRONGTYPE)    the next one goes on; never retried forever

An episode is a run of failures of one class: its first failure logs one warning line, its
end (the next commit that goes through) one info line, whatever the number of targets and
retries in between (it was one traceback per target per tick).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from redis.exceptions import (
    AuthenticationError,
    AuthorizationError,
    BusyLoadingError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gex_alertd.ops import metrics

log = structlog.get_logger()

CONNECTION, AUTH, OOM, READONLY, SCRIPT, CONFLICT, DATA = (
    "connection", "auth", "oom", "readonly", "script", "conflict", "data",
)  # fmt: skip
CLASSES = (CONNECTION, AUTH, OOM, READONLY, SCRIPT, CONFLICT, DATA)

# replies that say this snapshot (or its key) can never take the write, however often it is sent
_DATA_MARKERS = ("WRONGTYPE", "Invalid stream ID", "must be greater than 0-0")
_AUTH_PREFIXES = ("NOAUTH", "WRONGPASS", "NOPERM")


def is_wrongtype(exc: BaseException) -> bool:
    """A key holds another type than the command needs (made by hand, or another program's)."""
    # anywhere in the text: a pipeline's raised error starts "Command # 1 (...) of pipeline"
    return isinstance(exc, ResponseError) and "WRONGTYPE" in str(exc)


def classify(exc: BaseException) -> str:
    """The class of an error raised by a commit (or any Redis call on the poll path)."""
    from gex_alertd.commit import CommitConflict  # commit imports the batcher, not us

    if isinstance(exc, AuthenticationError | AuthorizationError):
        return AUTH
    if isinstance(exc, CommitConflict):
        return CONFLICT
    if isinstance(exc, OutOfMemoryError):
        return OOM
    if isinstance(exc, ReadOnlyError):
        return READONLY
    if isinstance(exc, RedisConnectionError | RedisTimeoutError | BusyLoadingError | OSError):
        return CONNECTION
    if isinstance(exc, ResponseError):
        text = str(exc)
        if text.startswith(_AUTH_PREFIXES):
            return AUTH
        if text.startswith("OOM ") or "used memory > 'maxmemory'" in text:
            return OOM
        if text.startswith("READONLY"):
            return READONLY
        if any(marker in text for marker in _DATA_MARKERS):
            return DATA
        return SCRIPT
    if isinstance(exc, RedisError):
        return CONNECTION
    return SCRIPT


@dataclass
class Episode:
    since: float  # wall time of its first failure
    failures: int
    last_error: str


class RedisTrouble:
    """The open episodes, per class, shared by every poller of a daemon."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self.episodes: dict[str, Episode] = {}

    def failed(self, kind: str, error: str) -> None:
        """Count one failure of `kind` (its message already redacted); the first of an
        episode logs one line."""
        metrics.REDIS_ERRORS.labels(kind).inc()
        if kind == DATA:
            return  # per snapshot, set aside and logged by the poller; nothing stays open
        episode = self.episodes.get(kind)
        if episode is not None:
            episode.failures += 1
            episode.last_error = error
            return
        self.episodes[kind] = Episode(self._clock(), 1, error)
        log.warning(
            "redis refusing commits; targets back off, each snapshot kept pending",
            error_class=kind,
            error=error,
        )

    def succeeded(self) -> None:
        """A commit went through: every open episode is over."""
        if not self.episodes:
            return
        now = self._clock()
        for kind, episode in self.episodes.items():
            log.info(
                "redis commits going through again",
                error_class=kind,
                failures=episode.failures,
                lasted_s=round(now - episode.since, 1),
            )
        self.episodes.clear()

    def problems(self) -> list[str]:
        """One line per open episode, for /healthz."""
        now = self._clock()
        return [
            f"redis {kind} errors for {now - e.since:.0f} s ({e.failures} failures): {e.last_error}"
            for kind, e in sorted(self.episodes.items())
        ]

    def health(self) -> dict[str, Any]:
        now = self._clock()
        return {
            kind: {
                "since_s": round(now - e.since, 1),
                "failures": e.failures,
                "last_error": e.last_error,
            }
            for kind, e in sorted(self.episodes.items())
        }
