"""A small, scriptable, REAL Flow GEX upstream for tests: an aiohttp server on 127.0.0.1.

Use it when a test needs to see what the daemon sends and to control exactly what it gets back.

    async with Upstream() as up:                       # listens on a free loopback port
        up.push(Reply(429, {"message": "slow down"}, headers={"Retry-After": "1"}))
        up.push(Reply.json(flow_gex_body("SPY")), symbol="SPY")
        client = FlowGexClient(up.url, "test-key")
        ...
        assert up.requests[0].headers["X-Api-Key"] == "test-key"
        assert up.requests[1].arrived_at >= up.requests[0].responded_at + 1

How replies are chosen, per request, first match wins:
1. the queue for the request's exact path (`push(..., path=...)` or `push(..., symbol=...)`),
2. the shared queue (`push(...)` with neither),
3. the default: a `Reply`, or a callable `(request) -> Reply` (sync or async) given to
   `Upstream(default=...)` / `set_default`; without one, a valid Flow GEX 200 for the symbol in
   the path with an `as_of` one second later than the previous default reply (always new data;
   the first is six hours before the upstream started, inside any daemon's as_of window).
Queued replies are used once each, in arrival order.

`wait_for_requests(n)` waits until n requests arrived; `reset()` forgets requests and queues.
Every request is recorded (`requests`, a list of `Recorded`) with its path, query, headers,
`arrived_at` (time.monotonic() when the handler started) and `responded_at` (monotonic, just
before the response was handed to the transport; None if it never was: cancelled/aborted).
`time.monotonic()` is the clock of the client code under test too, so arrival times can be
compared with the client's own instants.

A `Reply` can delay (`delay_s`, cut short by `stop()`), send raw bytes, or send only a prefix of
its body and drop the connection (`truncate_at`) to simulate a connection lost mid-body.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from aiohttp import web

from tests.support.wait import WAIT_S, eventually

FLOW_GEX_PATH = "/v1/flow/gex/"


@dataclass
class Reply:
    """One scripted response. `body`: bytes/str sent as is, anything else encoded as JSON."""

    status: int = 200
    body: Any = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    content_type: str = "application/json"
    truncate_at: int | None = None  # send this many body bytes, then drop the connection

    @classmethod
    def json(cls, obj: Any, status: int = 200, **kw: Any) -> Reply:
        return cls(status, msgspec.json.encode(obj), **kw)

    def body_bytes(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        return msgspec.json.encode(self.body)


@dataclass
class Recorded:
    method: str
    path: str  # percent-decoded, as routed
    raw_path: str  # as sent, with its query string
    query: dict[str, str]
    headers: dict[str, str]  # case-preserving copy; look up with the canonical spelling
    arrived_at: float
    responded_at: float | None = None
    status: int | None = None


Responder = Callable[[web.Request], "Reply | Awaitable[Reply]"]


def flow_gex_body(
    symbol: str = "SPY",
    *,
    as_of: datetime | str | None = None,
    spot: float = 500.0,
    strikes: int = 20,
    step: float = 5.0,
    flip: float | None = 495.0,
    flip_status: str | None = "available",
    expiry: str | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """A valid Flow GEX 200 body (dealer convention: call GEX > 0, put GEX < 0).

    `strikes` rows centred on `spot`; `overrides` replace or add top-level fields.
    """
    if as_of is None:
        as_of = datetime.now(UTC)
    if isinstance(as_of, datetime):
        as_of = as_of.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    first = round(spot / step) * step - step * (strikes // 2)
    rows = []
    total = 0.0
    for i in range(strikes):
        k = first + i * step
        weight = math.exp(-(((k - spot) / (step * 4)) ** 2))
        call_oi, put_oi = round(5000 * weight + 100), round(6000 * weight + 100)
        call_gex = call_oi * 0.01 * 100 * spot * spot * 0.01 * weight
        put_gex = -put_oi * 0.01 * 100 * spot * spot * 0.01 * weight
        total += call_gex + put_gex
        rows.append(
            {
                "strike": k,
                "call_gex": call_gex,
                "put_gex": put_gex,
                "net_gex": call_gex + put_gex,
                "call_oi": call_oi,
                "put_oi": put_oi,
                "call_volume": i * 10,
                "put_volume": i * 12,
                "call_oi_change": i - strikes // 2,
                "put_oi_change": None if i % 3 == 0 else 2 * i,
            }
        )
    body: dict[str, Any] = {
        "symbol": symbol,
        "as_of": as_of,
        "underlying_price": spot,
        "expiry": expiry,
        "live_net_gex": total,
        "live_net_gex_label": "positive" if total >= 0 else "negative",
        "live_gamma_flip": flip,
        "gamma_flip_status": flip_status,
        "strikes": rows,
        "endpoint_version": "1.0",
    }
    body.update(overrides)
    return body


class Upstream:
    """A scripted aiohttp server on 127.0.0.1; see the module docstring."""

    def __init__(self, default: Reply | Responder | None = None) -> None:
        self.default = default
        self.requests: list[Recorded] = []
        self._queue: deque[Reply] = deque()
        self._by_path: dict[str, deque[Reply]] = {}
        self._runner: web.AppRunner | None = None
        self._stopping = asyncio.Event()
        # recent, so a daemon stores it (an as_of older than redis.retention is refused), and
        # far enough back that one default reply per second ahead never passes the wall clock
        self._default_as_of = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=6)
        self.port = 0

    @property
    def url(self) -> str:
        if not self.port:
            raise RuntimeError("Upstream is not started")
        return f"http://127.0.0.1:{self.port}"

    # --- scripting -----------------------------------------------------------------------------

    def push(self, *replies: Reply, path: str | None = None, symbol: str | None = None) -> None:
        """Queue replies, for one path (or `symbol`'s Flow GEX path) or for any request."""
        if symbol is not None:
            path = FLOW_GEX_PATH + symbol
        if path is None:
            self._queue.extend(replies)
        else:
            self._by_path.setdefault(path, deque()).extend(replies)

    def set_default(self, default: Reply | Responder | None) -> None:
        self.default = default

    def requests_for(self, path: str | None = None, *, symbol: str | None = None) -> list[Recorded]:
        if symbol is not None:
            path = FLOW_GEX_PATH + symbol
        return [r for r in self.requests if r.path == path]

    async def wait_for_requests(self, count: int, timeout_s: float = WAIT_S) -> list[Recorded]:
        """Wait until at least `count` requests arrived; AssertionError after `timeout_s`."""
        try:
            await eventually(lambda: len(self.requests) >= count, f"{count} requests", timeout_s)
        except AssertionError as exc:
            raise AssertionError(f"upstream saw {len(self.requests)} requests: {exc}") from None
        return self.requests[:count]

    def reset(self) -> None:
        """Forget recorded requests and queued replies (the default stays)."""
        self.requests.clear()
        self._queue.clear()
        self._by_path.clear()

    def pending(self) -> int:
        """Queued replies not used yet."""
        return len(self._queue) + sum(len(q) for q in self._by_path.values())

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> Upstream:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # handler_cancellation: a client that gave up (timeout) cancels the delayed handler
        self._runner = web.AppRunner(
            app, access_log=None, shutdown_timeout=0.5, handler_cancellation=True
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Upstream:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- serving -------------------------------------------------------------------------------

    async def _choose(self, request: web.Request) -> Reply:
        queue = self._by_path.get(request.path)
        if queue:
            return queue.popleft()
        if self._queue:
            return self._queue.popleft()
        default = self.default
        if default is None:
            return self._fresh_snapshot(request)
        if isinstance(default, Reply):
            return default
        reply = default(request)
        if inspect.isawaitable(reply):
            reply = await reply
        return reply

    def _fresh_snapshot(self, request: web.Request) -> Reply:
        if not request.path.startswith(FLOW_GEX_PATH):
            return Reply.json({"message": f"no route {request.path}"}, status=404)
        self._default_as_of += timedelta(seconds=1)
        symbol = request.path[len(FLOW_GEX_PATH) :]
        body = flow_gex_body(symbol, as_of=self._default_as_of, expiry=request.query.get("expiry"))
        return Reply.json(body)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        record = Recorded(
            method=request.method,
            path=request.path,
            raw_path=request.raw_path,
            query=dict(request.query),
            headers=dict(request.headers),
            arrived_at=time.monotonic(),
        )
        self.requests.append(record)
        reply = await self._choose(request)
        if reply.delay_s > 0:
            try:
                await asyncio.wait_for(self._stopping.wait(), reply.delay_s)
            except TimeoutError:
                pass
        body = reply.body_bytes()
        record.status = reply.status
        if reply.truncate_at is not None:
            resp = web.StreamResponse(status=reply.status, headers=dict(reply.headers))
            resp.content_type = reply.content_type
            resp.content_length = len(body)
            record.responded_at = time.monotonic()
            await resp.prepare(request)
            await resp.write(body[: reply.truncate_at])
            if request.transport is not None:
                request.transport.close()
            return resp
        resp = web.Response(status=reply.status, body=body, headers=dict(reply.headers))
        resp.content_type = reply.content_type
        record.responded_at = time.monotonic()
        return resp
