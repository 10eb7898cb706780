"""The daemon: wires the source, the pollers, the commit, the outbox and the ops surface.

Lifecycle: start() brings Redis, the source, the membership and the poll engine up (then
READY=1); SIGTERM stops new polls, lets in-flight commits finish, leaves the membership, drains
the outbox up to a timeout and returns; SIGHUP re-reads the config and applies it only when it
is valid.

The Daemon builds the parts, starts and stops them and wires them together; each concept lives
in its own module: the membership, the fence and what is owned (member.py), the start-up key
refusal (startup_key.py), the reload protocol and what only a restart changes (reload.py),
/healthz, the gauges and STATUS= (ops/health.py), the dead-man's switch (heartbeat.py), the
410 operator alert (channel_gone.py).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from dataclasses import dataclass, field
from typing import Any

import msgspec
import structlog
from redis.exceptions import RedisError

from gex_alertd import config as config_mod
from gex_alertd import keys, redaction, store
from gex_alertd.asof_window import AsOfWindow
from gex_alertd.channel_gone import tell_channel_gone
from gex_alertd.config import Config
from gex_alertd.connections import REDIS_DOWN, connect_config, describe, wait_until_reachable
from gex_alertd.duties import Duties, SessionGate
from gex_alertd.heartbeat import Alive
from gex_alertd.member import Member, instance_id
from gex_alertd.operator_rules import OperatorRules, with_defaults
from gex_alertd.ops import early_sighup
from gex_alertd.ops import health as ops_health
from gex_alertd.ops.calendar import MarketHours
from gex_alertd.ops.calendar_load import CalendarUnavailable, NyseCalendar
from gex_alertd.ownership import FENCE_S, HEARTBEAT_S, Membership
from gex_alertd.pipeline import Poller
from gex_alertd.pool import PollPool
from gex_alertd.redis_errors import RedisTrouble
from gex_alertd.reload import Reloader, restart_only
from gex_alertd.sources.backoff import Backoff
from gex_alertd.sources.flowgex import FlowGexClient
from gex_alertd.startup_key import StartupKey

log = structlog.get_logger()

GAUGES_S = 5.0  # engine figures into /metrics and the systemd status line
CALENDAR_CHECK_S = 3600.0  # the NYSE table's runway (a refresh only when it runs short)
STOP_STEP_S = 2.0  # the short steps of a stop (duties, leaving the membership)


@dataclass
class Stats:
    started_at: float = field(default_factory=time.time)
    alerts_fired: int = 0


class Daemon:
    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.instance_id = instance_id(cfg)
        self.stats = Stats()
        self.redis = connect_config(cfg.redis)
        self.simulator: Any = None
        self.client: FlowGexClient | None = None
        self.committer: Any = None
        self.settled: Any = None  # settled.SettledProfiles, made when a rule first needs it
        self.dispatcher: Any = None
        self.pool: PollPool | None = None
        self.duties: Duties | None = None
        self.membership: Membership | None = None
        self.member: Member | None = None  # made with the membership and the pool, in start()
        self.gate: SessionGate | None = None
        # the NYSE session table, exported out of process (no pandas in the daemon)
        self.calendar = NyseCalendar(self.redis)
        self.outcomes: Any = None
        self.ops_server: Any = None
        self.live_page: Any = None
        self.notifier: Any = None
        self._stop = asyncio.Event()
        self._background: list[asyncio.Task[Any]] = []
        self._api_key: str | None = None
        self.operators = self._build_operators(cfg)
        self.alive = Alive(self.redis, self.instance_id)  # the dead-man's switch (heartbeat:)
        # flowgex-api.md: a key refused before the upstream ever took it stops the daemon
        self.startup_key = StartupKey(stop=self._stop.set)
        self.beat_s = HEARTBEAT_S
        self.fence_s = FENCE_S  # see ownership: no beat for this long, others known: stop polling
        self.reloader = Reloader(
            config=lambda: self.cfg,
            apply=self.reload,
            calendar=self.calendar,
            notifier=lambda: self.notifier,
            stopping=self._stop.is_set,
        )
        # Redis error episodes on the poll/commit path, shared by every poller (redis_errors)
        self.trouble = RedisTrouble()

    # --- start ---------------------------------------------------------------------------

    async def start(self) -> None:
        from gex_alertd.ops.sdnotify import SystemdNotifier

        self.notifier = SystemdNotifier()
        await wait_until_reachable(self.redis, describe(self.cfg.redis), stop=self._stop)
        if self._stop.is_set():  # stopped while Redis was still away: nothing started yet
            return
        if self.cfg.watch.market_hours == "nyse":
            await self.calendar.ensure()  # CalendarUnavailable: a startup error (exit 2)
        await self._migrate_legacy_outbox()
        self.client = await self._build_client(self.cfg)
        self.committer = self._build_committer(self.cfg)
        self.membership = Membership(self.redis, self.instance_id)
        # workers beyond the HTTP concurrency overlap one poll's commit with others' fetches
        self.pool = PollPool(workers=2 * self.cfg.source.max_concurrency)
        self.member = Member(
            self.membership,
            self.pool,
            on_moved=self._targets_moved,
            stopping=self._stop.is_set,
            fence_s=self.fence_s,
        )
        self.pool.replace(self._build_pollers(self.cfg))
        # the first beat before any poll: a daemon joining others must not poll their targets,
        # and before delivery starts: nor read the outboxes they own
        await self.member.beat(joining=True)
        await self._start_dispatcher()
        self.duties = Duties()
        self._arm_gate(self.cfg)
        self.pool.start()
        self.duties.every("heartbeat", self.beat_s, self.member.beat)
        self.duties.every("gauges", GAUGES_S, lambda: ops_health.gauges(self))
        self._arm_outcomes(self.cfg)
        self._arm_alive(self.cfg)
        self.duties.start()
        await self._start_ops_server()
        self.reloader.status.start()  # ops: `reload --wait` finds this pid from here on
        # ops: READY only once Redis answers and the targets are queued
        self.notifier.ready()
        self.notifier.status(ops_health.status_line(self))
        self._background.append(asyncio.create_task(self.notifier.run_watchdog(self._stop)))
        log.info(
            "gex-alertd started",
            source=self.cfg.source.kind,
            instance=self.instance_id,
            symbols=len(self.pool.pollers),
            owned=len(self.pool.owned),
            members=len(self.membership.members),
            rules=len(self.cfg.rules),
            channels=sorted(self.cfg.channels),
        )
        self._log_capacity(self.cfg)
        self.reloader.started()

    async def _migrate_legacy_outbox(self) -> None:
        """What the single outbox of an earlier release still owes moves onto the per-symbol
        outboxes before the first poll (`gex-alertd migrate`, exactly once however many
        daemons start), so an upgrade loses nothing even if nobody ran the command."""
        from gex_alertd import migrate

        try:
            if not await self.redis.exists(keys.LEGACY_ALERTS):
                return
            summary = await migrate.migrate(self.redis)
        except (*REDIS_DOWN, RedisError) as exc:  # the daemon still starts; the command retries
            log.warning("legacy outbox not migrated: run `gex-alertd migrate`", error=str(exc))
            return
        log.info("legacy outbox migrated", **summary.line())

    async def _build_client(self, cfg: Config) -> FlowGexClient:
        if cfg.source.kind == "simulator":
            from gex_alertd.sources.simulator.embedded import start_embedded

            # the embedded simulator is served over loopback HTTP so the daemon uses exactly
            # the client code path it uses against the real API
            self._api_key = cfg.source.api_key or "sim-" + os.urandom(12).hex()
            redaction.register(self._api_key)
            symbols = sorted(
                {t.symbol for t in cfg.watch.entries()} | set(cfg.source.simulator.symbols)
            )
            options = cfg.source.simulator
            if options.scenario and options.scenario != "demo":
                path = config_mod.resolve_relative(cfg, options.scenario)
                options = msgspec.structs.replace(options, scenario=str(path))
            self.simulator = await start_embedded(options, symbols, self._api_key)
            return FlowGexClient.from_config(
                cfg.source,
                base_url=self.simulator.base_url,
                api_key=self._api_key,
                max_age_s=store.max_age_s(cfg.redis),
            )
        return FlowGexClient.from_config(cfg.source, max_age_s=store.max_age_s(cfg.redis))

    def _build_committer(self, cfg: Config) -> Any:
        from gex_alertd.commit import Committer

        return Committer(self.redis, list(cfg.rules), cfg.redis)

    async def _commit(self, snap: Any, expiry: str | None) -> Any:
        if self.committer.engine.needs_settled(snap.symbol):
            await self._settled().attach(snap, expiry)  # the edge: the rule itself is pure
        result = await self.committer.commit(snap, expiry)
        self.stats.alerts_fired += len(result.alerts)
        if result.alerts and self.dispatcher is not None:
            self.dispatcher.poke(snap.symbol)
        return result

    def _settled(self) -> Any:
        if self.settled is None:
            from gex_alertd.settled import SettledProfiles

            async def fetch(symbol: str, expiry: str | None) -> bytes:
                assert self.client is not None  # the current one, after any reload
                return await self.client.fetch_settled(symbol, expiry)

            self.settled = SettledProfiles(
                self.redis, fetch, ttl_s=self.cfg.redis.retention or 7 * 86400
            )
        return self.settled

    def _build_operators(self, cfg: Config) -> OperatorRules:
        rules = with_defaults(cfg.rules, cfg.ops.operator_channels)
        return OperatorRules(
            self.redis, rules, cfg.ops.operator_channels, market_open=self._market_open
        )

    def _market_open(self) -> bool:
        # the session gate's view (watch.market_hours); no gate: always open
        return self.gate is None or bool(self.gate.open)

    async def _observe(self, target: Any, snap: Any, exc: Any) -> None:
        """Every fetch's outcome: the operator rules, the heartbeat's count, and the start-up
        key check."""
        if exc is None:
            self.alive.polled(target.key)
        self.startup_key.seen(exc)
        await self.operators.observe(target, snap, exc)

    def _arm_alive(self, cfg: Config) -> None:
        assert self.duties is not None
        self.duties.cancel("alive")
        if cfg.heartbeat is not None:
            self.duties.every("alive", cfg.heartbeat.every, self._alive)

    async def _alive(self) -> None:
        """The dead-man's switch (daemon/heartbeat.py): one message per daemon per interval."""
        if self.cfg.heartbeat is not None:
            fired = self.stats.alerts_fired + self.operators.enqueued
            await self.alive.send(self.cfg.heartbeat, fired)

    async def _set_aside(self, snap: Any, expiry: str | None, reason: str) -> None:
        await self.committer.set_aside(snap, expiry, reason)

    def _build_pollers(self, cfg: Config) -> list[Poller]:
        assert self.client is not None
        # bound once: each `self._commit` is a new method object (3 x 64 B x 5,000 targets)
        commit, observe, set_aside = self._commit, self._observe, self._set_aside
        return [
            Poller(
                target,
                self.client,
                commit,
                backoff=Backoff(cfg.source.backoff_base_s, cfg.source.backoff_max_s),
                observe=observe,
                set_aside=set_aside,
                trouble=self.trouble,
            )
            for target in cfg.watch.entries()
        ]

    def _arm_gate(self, cfg: Config) -> None:
        assert self.pool is not None and self.duties is not None
        self.duties.cancel("session")
        self.duties.cancel("calendar")
        if cfg.watch.market_hours == "always":  # premarket/postmarket only mean something with nyse
            self.gate = None
            self.pool.resume()
            return
        hours = MarketHours(
            cfg.watch.market_hours,
            cfg.watch.premarket,
            cfg.watch.postmarket,
            table=self.calendar.current,  # loaded before (start, Reloader._calendar_for)
        )
        self.duties.every("calendar", CALENDAR_CHECK_S, self._refresh_calendar)
        self.gate = SessionGate(self.duties, hours, pause=self.pool.pause, resume=self.pool.resume)
        self.gate.apply()

    async def _refresh_calendar(self) -> None:
        try:
            await self.calendar.ensure()  # a no-op until the table's runway is short
        except CalendarUnavailable:
            pass  # logged by the calendar, with the cause; the table we have keeps answering

    def _arm_outcomes(self, cfg: Config) -> None:
        """Alert outcomes and follow-ups (gex_alertd.outcomes.live), for the symbols we own."""
        assert self.duties is not None and self.member is not None
        self.duties.cancel("outcomes")
        if not cfg.outcomes.enabled:
            return
        if self.outcomes is None:
            from gex_alertd.outcomes.live import OutcomeDuty

            self.outcomes = OutcomeDuty(
                self.redis, lambda: self.cfg, self.member.owns, calendar=self.calendar
            )
        self.duties.every("outcomes", cfg.outcomes.interval, self.outcomes.run_once)

    def _owns_outbox(self, stream: str) -> bool:
        # before the first heartbeat (or without one) nobody is known: read everything
        return self.member is None or self.member.owns_outbox(stream)

    def _log_capacity(self, cfg: Config) -> None:
        from gex_alertd import capacity

        plan = capacity.for_config(cfg)
        fields = capacity.log_fields(plan)
        if plan.overloaded:
            # told, not hidden: every target will be polled less often than configured
            log.warning(
                "watchlist exceeds the request budget", plan=capacity.describe(plan), **fields
            )
        else:
            log.info("request budget", plan=capacity.describe(plan), **fields)

    def _targets_moved(self) -> None:
        # targets may have moved: an operator rule state another daemon wrote is read again
        self.operators.forget()
        if self.dispatcher is not None:
            self.dispatcher.streams.changed()  # and outboxes: each channel re-reads its set

    async def _start_dispatcher(self) -> None:
        from gex_alertd.notify.dispatch import Dispatcher, default_consumer
        from gex_alertd.notify.silences import SilenceStore

        self.dispatcher = Dispatcher(
            self.redis,
            self.cfg,
            # the member name (host + config), stable across restarts so the own PEL is found
            # again; GEX_ALERTD_CONSUMER keeps its old meaning, a suffix after the host name
            consumer=default_consumer()
            if "GEX_ALERTD_CONSUMER" in os.environ
            else self.instance_id,
            silences=SilenceStore(self.redis),
            on_channel_disabled=self._operator_channel_gone,
            owns=self._owns_outbox,
        )
        await self.dispatcher.start()

    async def _start_ops_server(self) -> None:
        if not self.cfg.ops.listen:
            return
        from gex_alertd.notify.silences import SilenceStore
        from gex_alertd.ops.http import OpsServer
        from gex_alertd.ops.silences_api import SilencesApi
        from gex_alertd.web.routes import LivePage

        # the page follows reloads: it reads the watch list of the config in force
        self.live_page = LivePage(self.redis, lambda: self.cfg.watch.entries())
        self.ops_server = OpsServer(
            self.cfg.ops.listen,
            self.health,
            auth_token=self.cfg.ops.auth_token,
            mounts=(SilencesApi(SilenceStore(self.redis)).add_routes, self.live_page.mount),
        )
        await self.ops_server.start()

    # --- run / stop ----------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.request_stop, "SIGTERM")
        loop.add_signal_handler(signal.SIGINT, self.request_stop, "SIGINT")
        loop.add_signal_handler(signal.SIGHUP, self.reloader.request)
        early = early_sighup.take()  # after ours is in: a SIGHUP from here on reaches the reloader
        if early:
            log.info("reload requested during start-up: runs once the start is done", signals=early)
            self.reloader.request()  # one reload reads the newest file for all of them

    def request_stop(self, why: str = "request") -> None:
        if not self._stop.is_set():
            log.info("stopping", reason=why)
            self._stop.set()

    async def run(self) -> None:
        """Start, serve until a stop is requested, then shut down cleanly."""
        try:
            await self.start()
            await self._stop.wait()
        finally:
            await self.shutdown()
        if self.startup_key.refused is not None:
            raise self.startup_key.refused

    async def shutdown(self) -> None:
        if self.notifier is not None:
            self.notifier.stopping()  # ops: STOPPING=1 as soon as we begin to stop
        self._stop.set()
        # a reload in flight would go on behind the stop: it and the stop both stopped a
        # channel it changed (the second's KeyError ended the stop: exit 1), or it started
        # channels after the stop's; a SIGHUP from here on is refused (reload.py)
        await self.reloader.cancel(STOP_STEP_S)
        # bounded step by step, so the whole stop fits systemd's TimeoutStopSec (30 s) even with
        # Redis black-holed: duties 2 s, polls and their commits one drain_timeout together,
        # leaving 2 s, then the outbox its own drain_timeout
        loop = asyncio.get_running_loop()
        polls_until = loop.time() + self.cfg.outbox.drain_timeout
        # no poll starts from here on, while the duties wind down (polls went on at full speed
        # until the duties had stopped, and slowed the duty the stop was waiting for)
        pool_stopped = None
        if self.pool is not None:
            pool_stopped = asyncio.ensure_future(self.pool.stop(grace_s=polls_until - loop.time()))
        if self.outcomes is not None:
            self.outcomes.halt()  # a long run stops at its next symbol
        if self.duties is not None:
            await self.duties.stop(grace_s=STOP_STEP_S)
        if pool_stopped is not None:
            await pool_stopped
        if self.committer is not None:
            try:
                await asyncio.wait_for(
                    self.committer.drain(), max(STOP_STEP_S, polls_until - loop.time())
                )
            except TimeoutError:
                log.warning("commits still in flight at stop were abandoned")
        if self.member is not None:
            await self.member.leave(STOP_STEP_S)
        if self.dispatcher is not None:
            await self.dispatcher.stop(drain_timeout=self.cfg.outbox.drain_timeout)
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if self.ops_server is not None:
            await self.ops_server.stop()
        if self.client is not None:
            await self.client.close()
        if self.simulator is not None:
            await self.simulator.close()
        await self.redis.aclose()
        log.info("gex-alertd stopped")

    # --- reload --------------------------------------------------------------------------

    async def reload_from_disk(self) -> bool:
        return await self.reloader.from_disk()

    async def reload(self, new: Config) -> None:
        """Apply a validated config without dropping state (rule state lives in Redis)."""
        old = self.cfg
        new = restart_only(old, new)
        if new.source != old.source:  # of the same kind, not the simulator: a new client
            previous = self.client
            self.client = FlowGexClient.from_config(
                new.source, max_age_s=store.max_age_s(new.redis)
            )
            if previous is not None:
                asyncio.get_running_loop().call_later(
                    30, lambda: asyncio.ensure_future(previous.close())
                )
        if self.client is not None:  # the retention bounds the as_of accepted
            self.client.as_of_window = AsOfWindow(
                new.source.max_future_s, store.max_age_s(new.redis)
            )
        self.cfg = new
        previous_committer = None
        if new.rules != old.rules or new.redis != old.redis:
            # a new engine; otherwise the committer keeps its cached rule state and previous
            # snapshots (a rebuild costs every target a state read and a snapshot read)
            previous_committer = self.committer
            self.committer = self._build_committer(new)
        if new.rules != old.rules or new.ops.operator_channels != old.ops.operator_channels:
            enqueued = self.operators.enqueued
            self.operators = self._build_operators(new)  # their state is re-read from Redis
            # the heartbeat counts what this daemon enqueued since its start: from 0 again,
            # its next message said minus the events enqueued before the reload
            self.operators.enqueued = enqueued
        if previous_committer is not None:
            # its batches in flight still complete, even when a stop cancels this reload
            await asyncio.shield(previous_committer.drain())
        if self.dispatcher is not None:
            await self.dispatcher.reload(new)
        if self.pool is not None and self.membership is not None:
            pollers = self._build_pollers(new)
            for p in pollers:
                # keep the running poller (its backoff and pending queue) when the entry is the same
                current = self.pool.pollers.get(p.target.key)
                if isinstance(current, Poller) and current.target == p.target:
                    current.source = p.source
            self.pool.replace(pollers)
            assert self.member is not None
            members = self.membership.members
            self.member.own(members, members)
            self._arm_gate(new)
        if self.duties is not None and new.outcomes != old.outcomes:
            self._arm_outcomes(new)
        if self.duties is not None and new.heartbeat != old.heartbeat:
            self._arm_alive(new)
        log.info("config reloaded", symbols=len(new.watch.entries()), rules=len(new.rules))
        self._log_capacity(new)

    # --- operator alerts, health, status -------------------------------------------------

    async def _operator_channel_gone(self, channel: str, reason: str) -> None:
        # the operator channels of the config in force: a reload may have changed them
        await tell_channel_gone(self.redis, self.cfg.ops.operator_channels, channel, reason)

    async def health(self) -> dict[str, Any]:
        return await ops_health.report(self)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()


async def run_daemon(cfg: Config) -> None:
    daemon = Daemon(cfg)
    daemon.install_signal_handlers()
    await daemon.run()
