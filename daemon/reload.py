"""Reloading the config on SIGHUP: read it off the loop, apply it only when it is valid.

A reload is a request (SIGHUP, or `reload --wait` through it) served by `Reloader`:
  - one at a time, in order: signals that arrive during one are served by the next, which
    reads the newest file; each outcome goes to the reload status (`reload --wait`) and the
    CONFIG_RELOADS counter, with systemd told RELOADING=1 ... READY=1 around it;
  - none applies before the start is done (in the middle of it, a reload found the pool
    without its duties, or started the channels the start was starting), and none while or
    after the daemon stops: a stop cancels the reload in flight, which says so;
  - an invalid file, or one asking for NYSE hours while there is no session table, is
    refused whole and the old config keeps running.
What the new config changes is applied by the daemon (its `apply`); `restart_only` keeps,
with a warning each, what cannot change without a restart.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import msgspec
import structlog

from gex_alertd import config as config_mod
from gex_alertd.config import Config, ConfigError
from gex_alertd.ops import metrics
from gex_alertd.ops.calendar_load import CalendarUnavailable, NyseCalendar
from gex_alertd.ops.reload_status import ReloadStatus, default_path
from gex_alertd.stopping import cancel_and_wait

if TYPE_CHECKING:
    from gex_alertd.ops.sdnotify import SystemdNotifier

log = structlog.get_logger()


class Reloader:
    def __init__(
        self,
        *,
        config: Callable[[], Config],
        apply: Callable[[Config], Awaitable[None]],
        calendar: NyseCalendar,
        notifier: Callable[[], SystemdNotifier | None],
        stopping: Callable[[], bool],
    ) -> None:
        self.status = ReloadStatus(default_path())
        self._config = config  # the config in force
        self._apply = apply
        self._calendar = calendar
        self._notifier = notifier  # made by the start
        self._stopping = stopping
        self._lock = asyncio.Lock()
        self._started = asyncio.Event()  # the start has finished: a reload may apply
        self._tasks: set[asyncio.Task[bool]] = set()

    def started(self) -> None:
        self._started.set()

    def request(self) -> None:
        """SIGHUP's handler."""
        self.status.requested()  # ops: counted before the reload runs (reload --wait)
        task = asyncio.create_task(self.from_disk())
        self._tasks.add(task)  # a reference, so the task is not collected mid-reload
        task.add_done_callback(self._tasks.discard)

    async def cancel(self, timeout_s: float) -> None:
        """End the reloads in flight (the stop). A cancel that lands inside a Redis call can be
        swallowed (stopping.py): cancelled again until the reload ends, within `timeout_s`."""
        if self._tasks:
            await cancel_and_wait(set(self._tasks), timeout_s=timeout_s)

    async def from_disk(self) -> bool:
        """One reload at a time; its outcome goes to the reload status (`reload --wait`)."""
        try:
            await self._started.wait()
        except asyncio.CancelledError:
            log.warning("reload not applied: the daemon stopped before its start was done")
            raise
        async with self._lock:
            began_at = self.status.begin()
            if self._stopping():
                problems = ["the daemon is stopping"]
            else:
                try:
                    problems = await self._from_disk()
                except asyncio.CancelledError:  # by the stop: `reload --wait` is told
                    self.status.finish(began_at, "refused", ["the daemon stopped"])
                    raise
            self.status.finish(began_at, "refused" if problems else "applied", problems)
            return not problems

    async def _from_disk(self) -> list[str]:
        """The problems that refused the new config; empty when it was applied."""
        path = self._config().path
        if path is None:
            log.warning("reload ignored: the config was not loaded from a file")
            return ["the config was not loaded from a file"]
        notifier = self._notifier()
        if notifier is not None:
            notifier.reloading()  # ops: RELOADING=1 ... READY=1
        try:
            new = await config_mod.load_off_loop(path)  # the loop keeps serving
            await self._calendar_for(new)
        except ConfigError as exc:
            log.error(
                "reload refused: invalid config, the old one keeps running", problems=exc.problems
            )
            metrics.CONFIG_RELOADS.labels(outcome="refused").inc()  # ops: reload outcome
            if notifier is not None:
                notifier.ready()
            return exc.problems or ["invalid config"]
        await self._apply(new)
        metrics.CONFIG_RELOADS.labels(outcome="applied").inc()  # ops: reload outcome
        if notifier is not None:
            notifier.ready()
        return []

    async def _calendar_for(self, new: Config) -> None:
        """A config asking for NYSE hours is refused while there is no session table."""
        if new.watch.market_hours != "nyse":
            return
        try:
            await self._calendar.ensure()
        except CalendarUnavailable as exc:
            raise ConfigError([f"watch.market_hours: nyse: {exc}"], str(new.path)) from None


def restart_only(old: Config, new: Config) -> Config:
    """`new` with what only a restart can change kept as it is in `old`, each with a warning:
    the Redis endpoint, the ops server and the log, the source's kind and the simulator. A
    source of the same kind that changed is applied with a new client (its `source` differs
    from `old`'s in the result)."""
    if new.redis.endpoint() != old.redis.endpoint():
        # url, cluster, sentinel or credentials: the open client cannot follow
        log.warning("redis endpoint changed: takes effect after a restart")
        new = msgspec.structs.replace(new, redis=old.redis)
    ops = msgspec.structs.replace(old.ops, operator_channels=new.ops.operator_channels)
    if new.ops != ops:
        # the ops server (its bind, its token) and the log are set up once, at the start:
        # applied silently, a rotated auth_token left the old one the one checked
        log.warning("ops.listen, auth_token, log_format, log_level: take effect after a restart")
        new = msgspec.structs.replace(new, ops=ops)
    if new.source != old.source and (
        new.source.kind != old.source.kind or new.source.kind == "simulator"
    ):
        log.warning("source changed: takes effect after a restart")
        new = msgspec.structs.replace(new, source=old.source)
    return new
