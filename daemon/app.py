"""The daemon: wires the source, the pollers, the commit, the outbox and the ops surface.

Lifecycle: start() brings Redis, the source and the jobs up (then READY=1); SIGTERM stops new
polls, lets in-flight commits finish, drains the outbox up to a timeout and returns; SIGHUP
re-reads the config and applies it only when it is valid.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec
import structlog

from gex_alertd import config as config_mod
from gex_alertd import redaction
from gex_alertd.config import Config, ConfigError
from gex_alertd.connections import REDIS_DOWN, connect, wait_until_reachable
from gex_alertd.model import AlertEvent, iso_utc, outbox_fields
from gex_alertd.ops import metrics
from gex_alertd.pipeline import Poller
from gex_alertd.scheduler import PollScheduler
from gex_alertd.sources.backoff import Backoff
from gex_alertd.sources.errors import AuthError
from gex_alertd.sources.flowgex import FlowGexClient
from gex_alertd.store import ALERTS_KEY

log = structlog.get_logger()


@dataclass
class Stats:
    started_at: float = field(default_factory=time.time)
    alerts_fired: int = 0


class Daemon:
    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.instance_id = f"{socket.gethostname()}:{os.getpid()}"
        self.stats = Stats()
        self.redis = connect(cfg.redis.url)
        self.simulator: Any = None
        self.client: FlowGexClient | None = None
        self.committer: Any = None
        self.dispatcher: Any = None
        self.scheduler: PollScheduler | None = None
        self.ops_server: Any = None
        self.notifier: Any = None
        self._stop = asyncio.Event()
        self._background: list[asyncio.Task[Any]] = []
        self._api_key: str | None = None

    # --- start ---------------------------------------------------------------------------

    async def start(self) -> None:
        from gex_alertd.ops.sdnotify import SystemdNotifier

        self.notifier = SystemdNotifier()
        await wait_until_reachable(self.redis, self.cfg.redis.url, stop=self._stop)
        self.client = await self._build_client(self.cfg)
        self.committer = self._build_committer(self.cfg)
        await self._start_dispatcher()
        self.scheduler = PollScheduler(gate=self._gate(self.cfg))
        self.scheduler.start(self._build_pollers(self.cfg))
        await self._start_ops_server()
        # ops: READY only once Redis answers and the jobs are scheduled
        self.notifier.ready()
        self.notifier.status(self._status_line())
        self._background.append(asyncio.create_task(self.notifier.run_watchdog(self._stop)))
        self._background.append(asyncio.create_task(self._status_loop()))
        log.info(
            "gex-alertd started",
            source=self.cfg.source.kind,
            symbols=len(self.scheduler.pollers),
            rules=len(self.cfg.rules),
            channels=sorted(self.cfg.channels),
        )

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
                cfg.source, base_url=self.simulator.base_url, api_key=self._api_key
            )
        return FlowGexClient.from_config(cfg.source)

    def _build_committer(self, cfg: Config) -> Any:
        from gex_alertd.commit import Committer

        return Committer(self.redis, list(cfg.rules), cfg.redis)

    async def _commit(self, snap: Any, expiry: str | None) -> Any:
        result = await self.committer.commit(snap, expiry)
        self.stats.alerts_fired += len(result.alerts)
        return result

    def _build_pollers(self, cfg: Config) -> list[Poller]:
        assert self.client is not None
        return [
            Poller(
                target,
                self.client,
                self._commit,
                self.redis,
                backoff=Backoff(cfg.source.backoff_base_s, cfg.source.backoff_max_s),
                instance_id=self.instance_id,
                on_auth_failure=self._operator_auth_alert,
            )
            for target in cfg.watch.entries()
        ]

    def _gate(self, cfg: Config) -> Any:
        if cfg.watch.market_hours == "always" and not (cfg.watch.premarket or cfg.watch.postmarket):
            return None
        from gex_alertd.ops.calendar import MarketHours

        hours = MarketHours(cfg.watch.market_hours, cfg.watch.premarket, cfg.watch.postmarket)
        hours.is_open(datetime.now(UTC))  # load the calendar now, before READY, not in a poll
        return hours.is_open

    async def _start_dispatcher(self) -> None:
        from gex_alertd.notify.dispatch import Dispatcher

        self.dispatcher = Dispatcher(self.redis, self.cfg)
        await self.dispatcher.start()

    async def _start_ops_server(self) -> None:
        if not self.cfg.ops.listen:
            return
        from gex_alertd.ops.http import OpsServer

        self.ops_server = OpsServer(self.cfg.ops.listen, self.health)
        await self.ops_server.start()

    # --- run / stop ----------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.request_stop, "SIGTERM")
        loop.add_signal_handler(signal.SIGINT, self.request_stop, "SIGINT")
        loop.add_signal_handler(
            signal.SIGHUP, lambda: asyncio.ensure_future(self.reload_from_disk())
        )

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

    async def shutdown(self) -> None:
        if self.notifier is not None:
            self.notifier.stopping()  # ops: STOPPING=1 as soon as we begin to stop
        self._stop.set()
        if self.scheduler is not None:
            await self.scheduler.stop(grace_s=self.cfg.outbox.drain_timeout)
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
        if self.cfg.path is None:
            log.warning("reload ignored: the config was not loaded from a file")
            return False
        if self.notifier is not None:
            self.notifier.reloading()  # ops: RELOADING=1 ... READY=1
        try:
            new = config_mod.load(self.cfg.path)
        except ConfigError as exc:
            log.error(
                "reload refused: invalid config, the old one keeps running", problems=exc.problems
            )
            metrics.CONFIG_RELOADS.labels(outcome="refused").inc()  # ops: reload outcome
            if self.notifier is not None:
                self.notifier.ready()
            return False
        await self.reload(new)
        metrics.CONFIG_RELOADS.labels(outcome="applied").inc()  # ops: reload outcome
        if self.notifier is not None:
            self.notifier.ready()
        return True

    async def reload(self, new: Config) -> None:
        """Apply a validated config without dropping state (rule state lives in Redis)."""
        old = self.cfg
        if new.redis.url != old.redis.url:
            log.warning("redis.url changed: takes effect after a restart")
            new = msgspec.structs.replace(new, redis=old.redis)
        if new.source != old.source:
            if new.source.kind != old.source.kind or new.source.kind == "simulator":
                log.warning("source changed: takes effect after a restart")
                new = msgspec.structs.replace(new, source=old.source)
            else:
                previous = self.client
                self.client = FlowGexClient.from_config(new.source)
                if previous is not None:
                    asyncio.get_running_loop().call_later(
                        30, lambda: asyncio.ensure_future(previous.close())
                    )
        self.cfg = new
        self.committer = self._build_committer(new)
        if self.dispatcher is not None:
            await self.dispatcher.reload(new)
        if self.scheduler is not None:
            self.scheduler.gate = self._gate(new)
            pollers = self._build_pollers(new)
            for p in pollers:
                # keep the running poller (its backoff and pending queue) when the entry is the same
                current = self.scheduler.pollers.get(p.target.key)
                if current is not None and current.target == p.target:
                    current.source = p.source
            self.scheduler.replace(pollers)
        log.info("config reloaded", symbols=len(new.watch.entries()), rules=len(new.rules))

    # --- operator alerts, health, status -------------------------------------------------

    async def _operator_auth_alert(self, target: Any, exc: AuthError) -> None:
        channels = list(self.cfg.ops.operator_channels)
        if not channels:
            return
        hour = datetime.now(UTC).strftime("%Y-%m-%dT%H")
        alert_id = f"operator:upstream-auth:{exc.status}:{hour}"
        try:
            # one operator alert per hour and status, however many symbols fail
            if not await self.redis.set(f"gex:operator:{alert_id}", 1, nx=True, ex=7200):
                return
            now = iso_utc(datetime.now(UTC))
            event = AlertEvent(
                id=alert_id,
                rule="upstream-auth",
                type="operator",
                symbol=target.symbol,
                expiry=target.expiry,
                severity="critical",
                as_of=now,
                fired_at=now,
                summary=f"Flow GEX upstream refused the API key (HTTP {exc.status}): {exc.message}",
                details={"status": exc.status, "message": exc.message},
            )
            await self.redis.xadd(ALERTS_KEY, outbox_fields(event, channels))
        except REDIS_DOWN as err:
            log.warning("could not enqueue operator alert", error=str(err))

    async def health(self) -> dict[str, Any]:
        try:
            await asyncio.wait_for(self.redis.ping(), timeout=2)
            redis_ok = True
        except (TimeoutError, *REDIS_DOWN):
            redis_ok = False
        now = time.time()
        symbols = {}
        if self.scheduler is not None:
            symbols = {k: p.health(now) for k, p in self.scheduler.pollers.items()}
        out: dict[str, Any] = {
            "ok": redis_ok and not self._stop.is_set(),
            "loop": True,  # answering at all means the loop runs
            "redis": redis_ok,
            "uptime_s": round(now - self.stats.started_at, 1),
            "symbols": symbols,
            "alerts_fired": self.stats.alerts_fired,
        }
        if self.dispatcher is not None:
            out["outbox"] = await self.dispatcher.health()
        return out

    def _status_line(self) -> str:
        n = len(self.scheduler.pollers) if self.scheduler else 0
        return f"watching {n} symbols, {self.stats.alerts_fired} alerts fired"

    async def _status_loop(self) -> None:
        while not self._stop.is_set():
            await asyncio.sleep(10)
            if self.notifier is not None:
                self.notifier.status(self._status_line())  # ops: STATUS=


async def run_daemon(cfg: Config) -> None:
    daemon = Daemon(cfg)
    daemon.install_signal_handlers()
    await daemon.run()
