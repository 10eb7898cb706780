"""The live page's HTTP surface, mounted on an aiohttp application (the daemon's ops server,
or `gex-alertd web`):

  GET /                                  the index page (static/index.html)
  GET /view?symbol=S[&expiry=D]          one symbol's page (static/symbol.html)
  GET /static/<file>                     the page's scripts, styles and the bundled ECharts
  GET /api/symbols                       every watched target with its newest scalars, health
  GET /api/{symbol}/snapshots?expiry=&from=&to=&window_pct=   the heatmap frame
  GET /api/{symbol}/alerts?expiry=&from=&to=                   that symbol's alerts
  GET /api/live[?symbol=S&expiry=D]      Server-Sent Events (snapshot | summary | alert)

Read-only. Only watched targets are served (no probing of other keys). Query values are
bounded and a bad one is a 400 naming it. Responses are gzip-compressed when the client
accepts it; the heavy work of a frame (decoding a day of strike blocks, JSON, gzip) runs in a
worker thread so the daemon's loop keeps polling while a page loads.
"""

from __future__ import annotations

import asyncio
import gzip
import mimetypes
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, time
from pathlib import Path
from typing import Any

import msgspec
import redis.asyncio as aioredis
import structlog
from aiohttp import web
from redis.exceptions import ResponseError

from gex_alertd import keys
from gex_alertd.config import WatchTarget
from gex_alertd.connections import entries, key_types
from gex_alertd.redis_errors import is_wrongtype
from gex_alertd.web import history
from gex_alertd.web.live import Hub, target_key
from gex_alertd.web.slots import Slot, Slots

log = structlog.get_logger(__name__)

STATIC = Path(__file__).with_name("static")
PING_S = 15.0  # a comment line this often keeps proxies from closing an idle stream
# a page whose client cannot take one frame in this long has stopped reading: its connection
# is closed (a peer that ACKs with a zero window never times out in TCP)
WRITE_TIMEOUT_S = 30.0
# heavy reads served at once (a heatmap frame: up to history.MAX_SNAPSHOTS entries, ~24 MB of
# blocks read, decoded and encoded; a symbol's alerts or the index: up to 20,000 outbox
# entries): with no bound, every reload in every tab (or any client of the ops port) held that
# much at the same time. The others wait their turn; a frame's slot is held until its render
# returns, even when its client has gone (web/slots.py)
FRAMES_AT_ONCE = 4
_SYMBOL = re.compile(r"[A-Za-z0-9.^_-]{1,16}")
_EXPIRY = re.compile(r"\d{4}-\d{2}-\d{2}")
_json = msgspec.json.Encoder()
DEFAULT_WINDOW_PCT = 10.0
MAX_TIME_MS = 253402300799999  # 9999-12-31T23:59:59.999Z
# 3: a day's 1.3 MB of JSON in ~30 ms for ~14% more bytes than 6, which took ~140 ms
GZIP_LEVEL = 3

Targets = Callable[[], Sequence[WatchTarget]]


def _gzip_response(request: web.Request, body: bytes, content_type: str) -> web.Response:
    if "gzip" in request.headers.get("Accept-Encoding", "") and len(body) > 512:
        return _prepared(gzip.compress(body, GZIP_LEVEL), content_type, gzipped=True)
    return _prepared(body, content_type, gzipped=False)


def _prepared(body: bytes, content_type: str, *, gzipped: bool) -> web.Response:
    headers = {
        "Content-Type": content_type,
        "Cache-Control": "no-store",
        "Vary": "Accept-Encoding",
        "X-Content-Type-Options": "nosniff",
    }
    if gzipped:
        headers["Content-Encoding"] = "gzip"
    return web.Response(body=body, headers=headers)


def _time_param(query: Any, name: str) -> int | None:
    """ms since the epoch, or an ISO 8601 instant (UTC when it has no offset)."""
    raw = query.get(name)
    if raw in (None, ""):
        return None
    if len(raw) > 40:
        raise history.BadQuery(f"{name}: too long")
    if raw.isascii() and raw.isdigit():  # isdigit() alone takes '²', which int() refuses
        ms = int(raw)
    else:
        try:
            ts = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            raise history.BadQuery(f"{name}: expected ms since the epoch or ISO 8601") from None
        ms = int((ts if ts.tzinfo else ts.replace(tzinfo=UTC)).timestamp() * 1000)
    # a stream ID's time is 0..2^64-1 ms: anything else makes Redis refuse the XRANGE (a 500)
    if not 0 <= ms <= MAX_TIME_MS:
        raise history.BadQuery(f"{name}: expected a time from 1970 to 9999")
    return ms


def _window_param(query: Any) -> float:
    raw = query.get("window_pct")
    if raw in (None, ""):
        return DEFAULT_WINDOW_PCT
    try:
        value = float(raw)
    except ValueError:
        raise history.BadQuery("window_pct: expected a number") from None
    if not 0.1 <= value <= 100.0:
        raise history.BadQuery("window_pct: expected 0.1 to 100 (percent of spot)")
    return value


class LivePage:
    def __init__(self, redis: aioredis.Redis, targets: Targets) -> None:
        self._redis = redis
        self._targets = targets
        self.hub = Hub(redis, lambda: [(t.symbol, t.expiry) for t in targets()])
        self._frames = Slots(FRAMES_AT_ONCE)
        self._static = _load_static()

    def mount(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/", self._page("index.html"))
        r.add_get("/view", self._page("symbol.html"))
        r.add_get("/static/{name:.+}", self._static_file)
        r.add_get("/api/symbols", self._symbols)
        r.add_get("/api/live", self._live)
        r.add_get("/api/{symbol}/snapshots", self._snapshots)
        r.add_get("/api/{symbol}/alerts", self._alerts)
        app.on_shutdown.append(lambda _app: self.hub.stop())

    # --- static ------------------------------------------------------------------------

    def _page(self, name: str) -> Callable[[web.Request], Any]:
        async def handler(request: web.Request) -> web.Response:
            return self._serve(request, name)

        return handler

    async def _static_file(self, request: web.Request) -> web.Response:
        return self._serve(request, request.match_info["name"])

    def _serve(self, request: web.Request, name: str) -> web.Response:
        found = self._static.get(name)
        if found is None:
            raise web.HTTPNotFound(text=f"404: no such file: {name}\n")
        content_type, body, packed = found
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            return _prepared(packed, content_type, gzipped=True)
        return _prepared(body, content_type, gzipped=False)

    # --- JSON --------------------------------------------------------------------------

    def _target(self, request: web.Request) -> WatchTarget:
        symbol = request.match_info.get("symbol") or request.query.get("symbol", "")
        expiry = request.query.get("expiry") or None
        if not _SYMBOL.fullmatch(symbol):
            raise web.HTTPBadRequest(text="400: symbol: not a ticker symbol\n")
        if expiry is not None and not _EXPIRY.fullmatch(expiry):
            raise web.HTTPBadRequest(text="400: expiry: expected YYYY-MM-DD\n")
        for t in self._targets():
            if t.symbol == symbol.upper() and t.expiry == expiry:
                return t
        raise web.HTTPNotFound(text=f"404: {target_key(symbol.upper(), expiry)} is not watched\n")

    async def _symbols(self, request: web.Request) -> web.Response:
        targets = [(t.symbol, t.expiry, t.interval_s) for t in self._targets()]
        now_ms = int(datetime.now(UTC).timestamp() * 1000)
        async with self._frames.slot():  # up to history.FAILING_SCAN outbox entries
            rows = await history.index_rows(self._redis, targets, now_ms)
        return _gzip_response(request, _json.encode({"symbols": rows}), "application/json")

    async def _snapshots(self, request: web.Request) -> web.Response:
        target = self._target(request)
        try:
            lo, hi = _time_param(request.query, "from"), _time_param(request.query, "to")
            window = _window_param(request.query)
        except history.BadQuery as exc:
            raise web.HTTPBadRequest(text=f"400: {exc}\n") from None
        async with self._frames.slot() as slot:
            try:
                body, accepts_gzip = await self._frame(request, slot, target, lo, hi, window)
            except ResponseError as exc:
                snap = keys.snap(target.symbol, target.expiry)
                raise await self._wrong_type(exc, {snap: "stream"}) from None
        return _prepared(body, "application/json", gzipped=accepts_gzip)

    async def _frame(
        self, request: web.Request, slot: Slot, target: WatchTarget, lo: int | None,
        hi: int | None, window: float,
    ) -> tuple[bytes, bool]:  # fmt: skip
        """The heatmap frame's body (gzipped when the client accepts it), and whether it is."""
        key = keys.snap(target.symbol, target.expiry)
        if lo is None:
            lo = await self._day_start(key, hi)
        batch, cut = await history.read_entries(self._redis, key, lo, hi)
        settled = None
        if batch:
            day = history.trading_day(int(batch[-1][0].split(b"-", 1)[0]))
            settled = await history.read_settled(self._redis, target.symbol, day, target.expiry)
        accepts_gzip = "gzip" in request.headers.get("Accept-Encoding", "")

        def render() -> bytes:
            frame = history.heat_frame(batch, window)
            frame.update(symbol=target.symbol, expiry=target.expiry, truncated=cut, settled=settled)
            body = _json.encode(frame)
            return gzip.compress(body, GZIP_LEVEL) if accepts_gzip else body

        return await slot.to_thread(render), accepts_gzip

    async def _day_start(self, key: str, hi: int | None) -> int | None:
        """Midnight New York of the trading day of the newest entry at or before `hi`."""
        top = entries(await self._redis.xrevrange(key, max="+" if hi is None else str(hi), count=1))
        if not top:
            return None
        day = history.trading_day(int(top[0][0].split(b"-", 1)[0]))
        return int(datetime.combine(day, time(), tzinfo=history.NY).timestamp() * 1000)

    async def _alerts(self, request: web.Request) -> web.Response:
        target = self._target(request)
        try:
            lo, hi = _time_param(request.query, "from"), _time_param(request.query, "to")
        except history.BadQuery as exc:
            raise web.HTTPBadRequest(text=f"400: {exc}\n") from None
        async with self._frames.slot():  # up to history.ALERT_SCAN outbox entries
            try:
                items = await history.read_alerts(self._redis, target.symbol, target.expiry, lo, hi)
            except ResponseError as exc:
                read = {keys.outbox(target.symbol): "stream", keys.outcomes(target.symbol): "hash"}
                raise await self._wrong_type(exc, read) from None
        return _gzip_response(request, _json.encode({"alerts": items}), "application/json")

    async def _wrong_type(self, exc: ResponseError, read: dict[str, str]) -> web.HTTPException:
        """A key the request read holds another type (made by hand): a 500 naming it, and one
        error line (it was aiohttp's bare 500 and a traceback). `read`: key -> its type."""
        if not is_wrongtype(exc):
            raise exc
        found = await key_types(self._redis, list(read))
        wrong = [f"{k} holds another type ({t}, not a {read[k]})" for k, t in found.items()
                 if t not in (read[k], "none")]  # fmt: skip
        why = "; ".join(wrong) or str(exc)
        log.error("live page: a key it reads holds another type", problem=why)
        return web.HTTPInternalServerError(text=f"500: {why}\n")

    # --- SSE ---------------------------------------------------------------------------

    async def _live(self, request: web.Request) -> web.StreamResponse:
        key = None
        if request.query.get("symbol"):
            t = self._target(request)
            key = target_key(t.symbol, t.expiry)
        try:
            sub = self.hub.subscribe(key)
        except OverflowError as exc:
            raise web.HTTPServiceUnavailable(text=f"503: {exc}\n") from None
        resp = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
            }
        )
        try:
            await resp.prepare(request)
            await resp.write(b"retry: 2000\n: connected\n\n")
            while True:
                try:
                    data = await asyncio.wait_for(sub.queue.get(), PING_S)
                except TimeoutError:
                    data = b": ping\n\n"
                if data is None:  # dropped for falling behind: the browser reconnects
                    break
                try:
                    async with asyncio.timeout(WRITE_TIMEOUT_S):
                        await resp.write(data)
                except TimeoutError:
                    # dropped by the hub, its handler still waited here forever with its
                    # frames in the transport's buffer, and dropped pages no longer count
                    # against MAX_SUBSCRIBERS: such connections piled up without bound
                    log.info("live page stopped reading; closed", write_timeout_s=WRITE_TIMEOUT_S)
                    if request.transport is not None:
                        request.transport.abort()
                    break
        except ConnectionResetError:  # the page was closed
            pass
        finally:
            self.hub.unsubscribe(sub)
        return resp


def _load_static() -> dict[str, tuple[str, bytes, bytes]]:
    """Every file under static/ by its relative path, with its gzip form, read once."""
    out = {}
    for path in sorted(STATIC.rglob("*")):
        if path.is_file():
            name = path.relative_to(STATIC).as_posix()
            body = path.read_bytes()
            content_type = mimetypes.guess_type(name)[0] or "text/plain"
            if content_type.startswith("text/") or content_type.endswith("javascript"):
                content_type += "; charset=utf-8"
            out[name] = (content_type, body, gzip.compress(body, 9))
    return out
