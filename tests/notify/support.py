"""Real receivers for the notifier tests: an aiohttp webhook/Slack-like server on 127.0.0.1 and
helpers to build configs and alerts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from aiohttp import web
from redis.exceptions import ConnectionError, ResponseError
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from gex_alertd import config as config_mod
from gex_alertd import keys
from gex_alertd.model import AlertEvent, outbox_fields
from gex_alertd.notify.dispatch import Dispatcher
from tests.support.redis_server import free_port
from tests.support.wait import eventually

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@dataclass
class Hit:
    at: float  # monotonic arrival
    headers: dict[str, str]
    body: bytes
    status: int = 200
    verified: bool | None = None
    method: str = "POST"


Responder = Callable[[int, web.Request], Awaitable[web.StreamResponse | None]]


@dataclass
class Receiver:
    """Records every request; `responder(n, request)` may return a response (else 200 ok)."""

    secret: str | None = None
    responder: Responder | None = None
    path: str = "/hook"
    port: int = field(default_factory=free_port)
    hits: list[Hit] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        hit = Hit(time.monotonic(), dict(request.headers), body, method=request.method)
        if self.secret:
            try:
                Webhook(self.secret).verify(body, dict(request.headers))
                hit.verified = True
            except WebhookVerificationError:
                hit.verified = False
        self.hits.append(hit)
        self.arrived.set()
        resp = None
        if self.responder is not None:
            resp = await self.responder(len(self.hits), request)
        if resp is None:
            resp = web.Response(text="ok")
        hit.status = resp.status
        return resp

    async def start(self) -> Receiver:
        app = web.Application()
        # every method: a redirected delivery arrives as a GET, and a test must see it
        app.router.add_route("*", self.path, self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def ids(self, status: int | None = 200) -> list[str]:
        """webhook-id of each request (answered with `status`, or all when None)."""
        return [
            h.headers.get("webhook-id", "")
            for h in self.hits
            if status is None or h.status == status
        ]

    async def wait_for(self, n: int, status: int | None = 200) -> None:
        what = f"{n} requests answered {status or 'with any status'} at {self.url}"
        await eventually(lambda: len(self.ids(status)) >= n, what)


def alert(i: int, symbol: str = "SPY", severity: str = "warning", **extra: Any) -> AlertEvent:
    return AlertEvent(
        id=f"spy-flip:{symbol}:{1_700_000_000_000 + i}",
        rule="spy-flip",
        type="flip_cross",
        symbol=symbol,
        expiry=None,
        severity=severity,
        as_of="2026-11-24T15:00:00.000Z",
        fired_at="2026-11-24T15:00:00.120Z",
        summary=f"{symbol} crossed above the gamma flip ({i})",
        details={"direction": "up", "spot": 513.1, "flip": 512.4, "net_gex": -1.25e9, **extra},
    )


WATCHED = (
    "SPY",
    "QQQ",
    "IWM",
    "DIA",
    "TLT",
    *(f"{p}{i}" for p in "SAB" for i in range(10)),
)  # the symbols the alerts of these tests are about


def make_config(channels: dict[str, Any], redis_url: str, **outbox: Any) -> config_mod.Config:
    tree = {
        "redis": {"url": redis_url},
        # the dispatcher reads the outboxes of the watched symbols (and the operator one)
        "watch": {"symbols": list(WATCHED)},
        "channels": channels,
        "outbox": {"claim_idle": "30s", "drain_timeout": "2s", **outbox},
    }
    return config_mod.parse(tree, "test")


async def _groups(redis: aioredis.Redis, streams: Iterable[str], channels: list[str]) -> None:
    """Create the groups the way the writers' scripts do; once more after a dropped connection
    (the outage tests enqueue right after a Redis restart)."""
    for stream in streams:
        for ch in channels:
            for last in (False, True):
                try:
                    await redis.xgroup_create(stream, keys.notify_group(ch), id="$", mkstream=True)
                except ResponseError as exc:
                    if "BUSYGROUP" not in str(exc):
                        raise
                except ConnectionError:
                    if last:
                        raise
                    continue
                break


async def enqueue(
    redis: aioredis.Redis,
    event: AlertEvent,
    channels: list[str],
    poke: Iterable[Dispatcher] = (),
) -> str:
    """XADD to the event's outbox as the daemon's writers do: its channels' groups first. The
    dispatchers in `poke` are told, as a daemon's commit tells its own (app.py): they read the
    outbox now. Without, a running dispatcher finds the entry on its next sweep, as it finds
    what another process wrote (`outbox retry`, `migrate`, another daemon)."""
    await _groups(redis, [keys.outbox(event.symbol)], channels)
    eid = await redis.xadd(keys.outbox(event.symbol), outbox_fields(event, channels))
    for d in poke:
        d.poke(event.symbol)
    return eid.decode() if isinstance(eid, bytes) else eid


async def enqueue_together(
    redis: aioredis.Redis,
    events: list[AlertEvent],
    channels: list[str],
    poke: Iterable[Dispatcher] = (),
) -> None:
    """Enqueue in one MULTI/EXEC: a worker blocked in XREADGROUP wakes once, after EXEC, and
    reads them all in one batch however slowly this process runs. `poke`: as in `enqueue`."""
    await _groups(redis, {keys.outbox(e.symbol) for e in events}, channels)
    pipe = redis.pipeline(transaction=True)
    for event in events:
        pipe.xadd(keys.outbox(event.symbol), outbox_fields(event, channels))
    await pipe.execute()
    for d in poke:
        for symbol in sorted({e.symbol for e in events}):
            d.poke(symbol)
