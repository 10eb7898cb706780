"""The operations endpoint: `/healthz` (is everything working?), `/livez` (is the process
alive?) and `/metrics` for Prometheus
(text format or OpenMetrics by `Accept`, gzip by `Accept-Encoding`), plus the routes other
parts mount on it (the live page).

Loopback by default (config `ops.listen`); any other bind needs `ops.auth_token`
(`ops.auth`), and a configured token is checked on every request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from prometheus_client.aiohttp import make_aiohttp_handler

from gex_alertd.ops.auth import middlewares
from gex_alertd.ops.listen import parse_listen
from gex_alertd.ops.metrics import REGISTRY
from gex_alertd.redaction import redact

log = structlog.get_logger(__name__)

HealthFn = Callable[[], Awaitable[dict[str, Any]]]
# a probe that cannot answer in this time counts as unhealthy (a wedged Redis call, for example)
HEALTH_TIMEOUT_S = 5.0
Mount = Callable[[web.Application], None]
# a connection with no request under way is closed after this long, also one whose request's
# headers are still coming in (a byte at a time): aiohttp's own default, 3,630 s, let each
# idle or dripping client hold one of the file descriptors Redis and the upstream need
KEEPALIVE_S = 75.0
# connections open at once; past it a new one is closed unanswered. aiohttp takes any number,
# and ~1,000 idle clients (systemd's default soft limit is 1,024 descriptors) left none for
# Redis, the upstream and the receivers. Live pages are fewer still (web.live.MAX_SUBSCRIBERS)
MAX_CONNECTIONS = 512


class _ClientErrors(logging.Filter):
    """A client's malformed request (a bad header byte, a line too long, a bad chunk size:
    aiohttp answers it 400 and closes) is a debug line here, not aiohttp's ERROR with a
    traceback: anyone who can connect (the ops token is checked after the request is parsed)
    wrote those to the journal at will, quoting their own bytes."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError):
            return True  # our own handler failing: a 500, with the traceback that explains it
        log.debug("malformed request refused", error=" ".join(str(exc).split())[:200])
        return False


class _Refused(asyncio.Protocol):
    """A connection past MAX_CONNECTIONS: closed at once, unanswered."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.close()


_REQUEST_LOG = logging.getLogger("gex_alertd.ops.requests")
_REQUEST_LOG.addFilter(_ClientErrors())


class OpsServer:
    def __init__(
        self,
        listen: str,
        health: HealthFn,
        *,
        auth_token: str | None = None,
        mounts: tuple[Mount, ...] = (),
    ) -> None:
        """`mounts` add their routes (and startup/cleanup hooks) to the application; a bind
        beyond loopback without `auth_token` is refused here (ValueError), whatever the
        config check said."""
        self.host, self._requested_port = parse_listen(listen)
        self._middlewares = middlewares(self.host, auth_token)
        self._health = health
        self._mounts = mounts
        self._runner: web.AppRunner | None = None
        self._listener: asyncio.Server | None = None
        self.port: int | None = None

    async def start(self) -> None:
        app = web.Application(middlewares=self._middlewares)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/livez", self._livez)
        # prometheus-client's own handler: Accept picks the text format or OpenMetrics, and
        # aiohttp gzips when the scraper asks. It renders on the event loop, which is fine
        # because no metric carries a per-symbol label: a scrape is a few hundred series at most.
        app.router.add_get("/metrics", make_aiohttp_handler(REGISTRY))
        for mount in self._mounts:
            mount(app)
        # access_log=None: probes every few seconds would drown the journal
        # handler_cancellation: a closed page's event stream ends at once (its subscription
        # is released) instead of at its next write
        self._runner = web.AppRunner(
            app,
            access_log=None,
            handle_signals=False,
            handler_cancellation=True,
            keepalive_timeout=KEEPALIVE_S,
            logger=_REQUEST_LOG,
        )
        await self._runner.setup()
        server = self._runner.server
        assert server is not None  # set up above
        bound = MAX_CONNECTIONS  # read once, at the start

        def connection() -> asyncio.BaseProtocol:
            # aiohttp's low-level server is the protocol factory (its documented use)
            return server() if len(server.connections) < bound else _Refused()

        try:
            self._listener = await asyncio.get_running_loop().create_server(
                connection, self.host, self._requested_port, reuse_address=True
            )
        except OSError as exc:
            await self._runner.cleanup()
            self._runner = None
            raise OSError(
                exc.errno,
                f"ops endpoint cannot listen on {self.host}:{self._requested_port}: {exc.strerror}",
            ) from None
        self.port = self._listener.sockets[0].getsockname()[1]
        log.info("ops endpoint listening", host=self.host, port=self.port)

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.close()  # no new connection while the open ones are shut
            self._listener = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _healthz(self, _: web.Request) -> web.Response:
        try:
            body = await asyncio.wait_for(self._health(), timeout=HEALTH_TIMEOUT_S)
        except TimeoutError:
            body = {"ok": False, "error": f"health check timed out after {HEALTH_TIMEOUT_S}s"}
        except Exception as exc:  # a probe must answer, whatever broke
            body = {"ok": False, "error": redact(f"{type(exc).__name__}: {exc}")}
        status = 200 if body.get("ok") else 503
        return web.json_response(body, status=status, dumps=_dumps)

    async def _livez(self, _: web.Request) -> web.Response:
        # For a probe that restarts the process (a container's liveness probe): an answer at all
        # means the event loop runs, and that is all a restart can fix. /healthz's 503s (Redis
        # down, a key refused, a channel answering 410, an outbox key of another type) are
        # states a restart does not change: probing them for liveness restarts a daemon that
        # still delivers everything else, in a loop. Under systemd the watchdog does this job.
        return web.json_response({"ok": True, "loop": True})


def _dumps(obj: Any) -> str:
    import json

    return redact(json.dumps(obj, default=str))
