"""One poll of one watch entry: fetch, drop repeats, commit, and handle every upstream error.

A snapshot that was fetched but could not be committed (Redis down) stays in a small pending
queue and is committed first on the next run: stream IDs come from `as_of`, so committing it
late, or twice, is harmless, and the rule state sees the same sequence it would have seen.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Protocol

import structlog
from redis.exceptions import RedisError

from gex_alertd import redaction
from gex_alertd.commit import CommitConflict
from gex_alertd.config import WatchTarget
from gex_alertd.connections import REDIS_DOWN
from gex_alertd.model import FlowGex, iso_utc, rowless, with_rows
from gex_alertd.ops import metrics
from gex_alertd.redis_errors import DATA, RedisTrouble, classify
from gex_alertd.sources.backoff import Backoff
from gex_alertd.sources.base import Source
from gex_alertd.sources.errors import (
    AuthError,
    BadRequest,
    RateLimited,
    RefusedSnapshot,
    SourceError,
    UnknownSymbol,
)

log = structlog.get_logger()

_POLL_COUNTERS: dict[str, Any] = {}
MAX_PENDING = 240  # one hour at 15 s: beyond that the oldest snapshots are dropped, loudly
# this many snapshots of one target set aside in a row is a condition that lasts (a key of
# another type made by hand), not one odd snapshot: /healthz lists it until one commits
ASIDE_PERSISTS = 3


class CommitOutcome(Protocol):
    # read-only, so a frozen result (commit.CommitResult) qualifies
    @property
    def stored(self) -> bool: ...
    @property
    def alerts(self) -> list[Any]: ...


CommitFn = Callable[[FlowGex, str | None], Awaitable[CommitOutcome]]
# every fetch's outcome (the snapshot, a repeat too, or the error) for the operator rules
# (stale_data, source_failing: gex_alertd.operator_rules); it must not raise
ObserveFn = Callable[[WatchTarget, FlowGex | None, SourceError | None], Awaitable[None]]
# (snapshot, expiry, reason): keep a snapshot that can never commit where an operator finds it
SetAsideFn = Callable[[FlowGex, str | None, str], Awaitable[None]]


class Poller:
    # one per watch target: no per-instance dict (~0.3 MB at 5,000 targets)
    __slots__ = (
        "aside_reason",
        "aside_streak",
        "auth_failing",
        "backoff",
        "commit",
        "disabled",
        "last_as_of",
        "last_error",
        "last_ok",
        "next_attempt",
        "observe",
        "pending",
        "refused",
        "set_aside",
        "set_aside_count",
        "source",
        "target",
        "trouble",
    )  # fmt: skip

    def __init__(
        self,
        target: WatchTarget,
        source: Source,
        commit: CommitFn,
        *,
        backoff: Backoff,
        observe: ObserveFn | None = None,
        set_aside: SetAsideFn | None = None,
        trouble: RedisTrouble | None = None,
    ):
        self.target = target
        self.source = source
        self.commit = commit
        self.backoff = backoff
        self.observe = observe
        self.set_aside = set_aside
        # shared by the daemon's pollers: one log line per episode, not per target and try
        self.trouble = trouble if trouble is not None else RedisTrouble()
        # a list, not a deque: it is nearly always empty, and an empty deque is 760 bytes
        # (x 5,000 targets); the oldest goes first only when Redis was down
        self.pending: list[FlowGex] = []
        self.next_attempt = 0.0  # loop time before which we do not fetch (backoff); 0.0: none
        self.disabled: str | None = None  # a permanent problem (404, 400): stop polling it
        self.last_ok: float | None = None  # wall time of the last successful poll
        self.last_as_of: datetime | None = None  # formatted when asked (`health`)
        self.last_error: str | None = None
        self.refused = 0  # snapshots refused for their as_of (asof_window)
        self.set_aside_count = 0  # snapshots that could never commit, moved to gex:dead
        self.aside_streak = 0  # of those, how many in a row since this target's last commit
        # why the last one was set aside: `last_error` is the last poll's, and a repeat (the
        # upstream's same snapshot) or a failed fetch after it says nothing about the commit
        self.aside_reason: str | None = None
        self.auth_failing: str | None = None  # the upstream's 401/403 while it lasts

    @property
    def _log(self) -> Any:
        # bound when a line is logged (errors only), not kept per target
        return log.bind(symbol=self.target.symbol, expiry=self.target.expiry)

    def _count(self, status: str) -> None:
        counter = _POLL_COUNTERS.get(status)
        if counter is None:  # a labelled child looked up once, not per poll
            counter = _POLL_COUNTERS[status] = metrics.POLLS.labels(status)
        counter.inc()

    async def poll(self) -> str:
        """Run one poll; return the outcome name (for metrics, tests and health)."""
        if self.disabled:
            return "disabled"
        # 0.0 unless backing off: most polls skip the loop lookup (on Python 3.11 each one is a
        # getpid() system call)
        if self.next_attempt:
            if asyncio.get_running_loop().time() < self.next_attempt:
                return "backoff"
            self.next_attempt = 0.0
        if self.pending and not await self._flush():
            return "redis_down"
        try:
            fetched = await self.source.fetch(self.target.symbol, self.target.expiry)
        except SourceError as exc:
            return await self._failed(exc)
        self.backoff.success()
        self.last_error = None
        self.auth_failing = None
        self.last_ok = time.time()
        # the rows dropped now, while still in cache: the commit reads the strike matrix
        # (model.rowless says why; the engine gives rows back to a rule type that reads them).
        # `fetched` goes too: it would hold the rows until the commit returns
        snap, repeated = rowless(fetched.snapshot, in_place=True), fetched.repeated
        del fetched
        if self.observe is not None:
            await self.observe(self.target, snap, None)
        if repeated:
            self._count("repeat")
            return "repeat"
        self._count("ok")
        self.pending.append(snap)
        if len(self.pending) > MAX_PENDING:
            dropped = self.pending.pop(0)
            self._log.error(
                "pending queue full, dropping oldest snapshot", as_of=str(dropped.as_of)
            )
        aside = self.set_aside_count
        if not await self._flush():
            return "redis_down"
        if self.set_aside_count > aside:
            return "set_aside"
        self.last_as_of = snap.as_of
        return "stored"

    async def _flush(self) -> bool:
        while self.pending:
            snap = self.pending[0]
            try:
                await self.commit(snap, self.target.expiry)
            except (*REDIS_DOWN, RedisError, CommitConflict) as exc:
                kind = classify(exc)
                error = redaction.redact(f"redis {kind}: {type(exc).__name__}: {exc}")
                self.trouble.failed(kind, error)
                if kind == DATA and await self._set_aside(snap, error):
                    continue
                # down, or up but refusing (OOM, READONLY after a failover, a script error):
                # the snapshot stays pending and the target backs off; the episode's one line
                # was logged by `trouble`
                delay = self.backoff.failure(exc)
                self.next_attempt = asyncio.get_running_loop().time() + delay
                self.last_error = error
                self._log.debug(
                    "commit failed, snapshot kept pending",
                    error=error,
                    pending=len(self.pending),
                    retry_in=round(delay, 2),
                )
                return False
            self.pending.pop(0)
            self.aside_streak = 0
            self.trouble.succeeded()
        return True

    async def _set_aside(self, snap: FlowGex, reason: str) -> bool:
        """Move a snapshot that can never commit to `gex:dead`; False when that failed too (it
        then stays pending like any other Redis failure)."""
        if self.set_aside is None:
            return False
        try:
            await self.set_aside(with_rows(snap), self.target.expiry, reason)  # whole
        except (*REDIS_DOWN, RedisError) as exc:
            self.trouble.failed(classify(exc), redaction.redact(f"set aside: {exc}"))
            return False
        self.pending.pop(0)
        self.set_aside_count += 1
        self.aside_streak += 1
        self.last_error = self.aside_reason = reason
        metrics.SNAPSHOTS_SET_ASIDE.inc()
        self._log.error(
            "snapshot can never commit; set aside to gex:dead",
            as_of=iso_utc(snap.as_of),
            error=reason,
        )
        return True

    async def _failed(self, exc: SourceError) -> str:
        status = type(exc).__name__
        if isinstance(exc, RefusedSnapshot):
            status = f"refused_{exc.reason}"
        elif exc.status:
            status = str(exc.status)
        self._count(status)
        self.last_error = str(exc)
        if self.observe is not None:
            await self.observe(self.target, None, exc)
        if isinstance(exc, UnknownSymbol | BadRequest):
            # the provider says this watch entry can never work: stop, keep the others running
            self.disabled = str(exc)
            self._log.error("watch entry disabled", error=str(exc), status=exc.status)
            return "disabled"
        delay = self.backoff.failure(exc)
        self.next_attempt = asyncio.get_running_loop().time() + delay
        if isinstance(exc, AuthError):
            self.auth_failing = str(exc)
            self._log.error(
                "upstream refused the API key", error=str(exc), retry_in=round(delay, 1)
            )
        elif isinstance(exc, RefusedSnapshot):
            self.refused += 1
            self._log.warning(
                "snapshot refused", reason=exc.reason, error=str(exc), retry_in=round(delay, 2)
            )
        elif isinstance(exc, RateLimited):
            self._log.warning("rate limited", retry_after=exc.retry_after, retry_in=round(delay, 2))
        else:
            self._log.warning("poll failed", error=str(exc), retry_in=round(delay, 2))
        return "error"

    def health(self, now: float | None = None) -> dict[str, Any]:
        now = time.time() if now is None else now
        return {
            "last_ok_age_s": None if self.last_ok is None else round(now - self.last_ok, 3),
            "last_as_of": None if self.last_as_of is None else str(self.last_as_of),
            "pending": len(self.pending),
            "disabled": self.disabled,
            "last_error": self.last_error,
            "refused": self.refused,
            "set_aside": self.set_aside_count,
            "set_aside_in_a_row": self.aside_streak,
        }
