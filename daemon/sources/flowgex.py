"""`FlowGexClient`: the upstream Flow GEX client (shared/flowgex-api.md), one attempt per fetch.

Budget and gate design
----------------------
Everything the provider limits is limited per API key, so the client keeps one `KeyLimiter`
(ratelimit.py) that every fetch on the key goes through, right before its request is sent:

1. `max_concurrency` bounds requests in flight (a semaphore; the connector pool matches it).
2. Inside it, `KeyLimiter.acquire()` waits for the *gate* (no request before a Retry-After
   window ends) and then for a slot of the *budget* (GCRA at `requests_per_min` with a small
   burst). Slots are reserved before sleeping, so concurrent waiters are served in order; a
   waiter re-checks the gate after its budget sleep, so a 429 that arrives while others queue
   holds them too. The request is sent with no await in between.
3. A 429 closes the gate for its Retry-After (delta-seconds or HTTP-date; without it
   X-RateLimit-Reset, else 1 s) the moment its headers arrive, before the body is read. A
   response of any status saying `X-RateLimit-Remaining: 0` closes the gate until
   `X-RateLimit-Reset`, so the key is not hammered into 429s. A 5xx with Retry-After is honoured
   the same way (the provider asked for quiet).
Requests already on the wire when a 429 lands cannot be recalled; everything sent after the
client has seen it waits the window out. Time waited goes to `RATE_LIMIT_WAIT`.

Retrying is the caller's job (the poller keeps a `Backoff` per watch entry): `fetch` never
loops, so one slow symbol cannot hold the budget for the others.

Errors map to gex_alertd.sources.errors with the server's own message (`message`, else
`detail`, else `error`, else a bounded body snippet), always passed through redaction. A 200
whose body does not decode and validate raises MalformedPayload: nothing from it is returned.
Redirects are not followed: a custom `X-Api-Key` header would travel to whatever host a
redirect names.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import aiohttp
import msgspec
import structlog
from multidict import CIMultiDictProxy
from yarl import URL

from gex_alertd import __version__, redaction
from gex_alertd.asof_window import AsOfWindow
from gex_alertd.model import PayloadError, decode_flow_gex
from gex_alertd.ops.metrics import RATE_LIMIT_WAIT, REQUEST_LATENCY, SNAPSHOTS_REFUSED
from gex_alertd.sources.base import Fetched
from gex_alertd.sources.errors import (
    AuthError,
    BadRequest,
    MalformedPayload,
    PlanError,
    RateLimited,
    RefusedSnapshot,
    SourceError,
    TransientError,
    UnknownSymbol,
)
from gex_alertd.sources.ratelimit import MAX_WAIT_S, KeyLimiter, parse_reset, parse_retry_after

if TYPE_CHECKING:
    from gex_alertd.config import SourceConfig

__all__ = ["FlowGexClient"]

PATH = "/v1/flow/gex/"
SETTLED_PATH = "/v1/exposure/gex/"
DEFAULT_RETRY_AFTER_S = 1.0
MAX_MESSAGE_CHARS = 300
_URL_CACHE_MAX = 512  # URLs kept built (~480 bytes each); a longer watchlist builds them per poll
_WS = re.compile(r"\s+")

log = structlog.get_logger()


class FlowGexClient:
    """The Flow GEX source (implements gex_alertd.sources.base.Source)."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout_s: float = 10,
        max_concurrency: int = 16,
        requests_per_min: float = 120,
        session: aiohttp.ClientSession | None = None,
        user_agent: str = f"gex-alertd/{__version__}",
        burst: int | None = None,
        max_body_bytes: int = 16 * 1024 * 1024,
        as_of_window: AsOfWindow | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if not api_key:
            raise ValueError("FlowGexClient needs an API key (set source.api_key)")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        redaction.register(api_key)
        self.base_url = base_url.rstrip("/")
        self.timeout_s = float(timeout_s)
        self.max_concurrency = max_concurrency
        # a 200-strike snapshot is ~40 KB; a body far beyond that is garbage, not data to hold
        self.max_body_bytes = max_body_bytes
        # an as_of outside it is refused before it is remembered as seen (asof_window.py)
        self.as_of_window = as_of_window if as_of_window is not None else AsOfWindow()
        self._wall_clock = wall_clock
        self.limiter = KeyLimiter(requests_per_min, burst)
        self._headers = {
            "X-Api-Key": api_key,
            "Accept": "application/json",
            "User-Agent": user_agent,
        }
        self._session = session
        self._owns_session = session is None
        self._sem = asyncio.Semaphore(max_concurrency)
        self._urls: dict[tuple[str, str | None], URL] = {}
        self._last_as_of: dict[tuple[str, str | None], int] = {}

    @classmethod
    def from_config(
        cls,
        cfg: SourceConfig,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        max_age_s: float | None = None,
    ) -> FlowGexClient:
        """Build from a gex_alertd.config.SourceConfig; the keywords override its values.
        `max_age_s`: the oldest as_of accepted (store.max_age_s of the redis config)."""
        key = api_key if api_key is not None else cfg.api_key
        if not key:
            raise ValueError("source.api_key: required for the flowgex source")
        return cls(
            base_url if base_url is not None else cfg.base_url,
            key,
            timeout_s=cfg.timeout_s,
            max_concurrency=cfg.max_concurrency,
            requests_per_min=cfg.requests_per_min,
            max_body_bytes=cfg.max_body_bytes,
            as_of_window=AsOfWindow(cfg.max_future_s, max_age_s),
        )

    # --- lifecycle -----------------------------------------------------------------------------

    def _get_session(self) -> aiohttp.ClientSession:
        session = self._session
        if session is None or (self._owns_session and session.closed):
            # created here, inside the running loop, because a session binds to its loop
            connector = aiohttp.TCPConnector(limit=self.max_concurrency, ttl_dns_cache=300)
            # no session-wide timeout: fetch() passes `timeout_s` with every request
            session = aiohttp.ClientSession(connector=connector, trust_env=False)
            self._session = session
            self._owns_session = True
        return session

    async def close(self) -> None:
        """Close the session if this client created it; a session passed in stays open."""
        if self._owns_session and self._session is not None and not self._session.closed:
            await self._session.close()
        if self._owns_session:
            self._session = None

    async def __aenter__(self) -> FlowGexClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- fetching ------------------------------------------------------------------------------

    def _url(self, symbol: str, expiry: str | None) -> URL:
        key = (symbol, expiry)
        url = self._urls.get(key)
        if url is None:
            # quote everything: a symbol like BRK/B must stay one path segment
            url = URL(f"{self.base_url}{PATH}{quote(symbol, safe='')}", encoded=True)
            if expiry is not None:
                url = url.with_query(expiry=expiry)
            if len(self._urls) >= _URL_CACHE_MAX:
                self._urls.clear()
            self._urls[key] = url
        return url

    async def fetch(self, symbol: str, expiry: str | None = None) -> Fetched:
        """One HTTP attempt, after the key's budget and any Retry-After window allow it."""
        status, body, latency = await self._get(self._url(symbol, expiry), symbol)
        return self._decoded(symbol, expiry, body, status, latency)

    async def fetch_settled(self, symbol: str, expiry: str | None = None) -> bytes:
        """The raw body of `GET /v1/exposure/gex/{symbol}` (the settled profile), one attempt
        on the same key, budget, timeout and body bound as `fetch`; decoding is the caller's
        (`gex_alertd.settled`). Raises the same SourceErrors."""
        url = URL(f"{self.base_url}{SETTLED_PATH}{quote(symbol, safe='')}", encoded=True)
        if expiry is not None:
            url = url.with_query(expiration=expiry)
        return (await self._get(url, symbol))[1]

    async def _get(self, url: URL, symbol: str) -> tuple[int, bytes, float]:
        """(status, body, latency) of a 2xx; any other status raises its SourceError."""
        session = self._get_session()
        async with self._sem:
            waited = await self.limiter.acquire()
            if waited > 0:
                RATE_LIMIT_WAIT.inc(waited)
            # no await between acquire() and the send: see ratelimit.KeyLimiter.acquire
            started = time.monotonic()
            # per request, so a change of `timeout_s` applies to the next request
            timeout = aiohttp.ClientTimeout(total=self.timeout_s)
            try:
                async with session.get(
                    url, headers=self._headers, timeout=timeout, allow_redirects=False
                ) as resp:
                    status = resp.status
                    headers = resp.headers
                    # close the gate before awaiting the body, so nobody slips through
                    retry_after = self._note_limits(status, headers, symbol)
                    body = await self._read_bounded(resp, symbol)
            except TimeoutError:
                REQUEST_LATENCY.observe(time.monotonic() - started)
                raise TransientError(
                    f"no complete response within {self.timeout_s:g} s", symbol=symbol
                ) from None
            except aiohttp.ClientError as exc:
                raise TransientError(
                    redaction.redact(f"request failed: {type(exc).__name__}: {exc}"), symbol=symbol
                ) from None
        latency = time.monotonic() - started
        REQUEST_LATENCY.observe(latency)

        if 200 <= status < 300:
            return status, body, latency
        raise _error_for(status, headers, body, symbol, retry_after)

    async def _read_bounded(self, resp: aiohttp.ClientResponse, symbol: str) -> bytes:
        """The body, decompressed, or MalformedPayload once it passes `max_body_bytes`.

        Counted after decompression, as it streams: a gzip bomb's Content-Length is small
        (816 KB expanding to 800 MB was fetched whole before); aiohttp inflates in bounded
        steps as we read, so what is held never passes the limit by more than one step."""
        limit = self.max_body_bytes
        length = resp.content_length
        if length is not None and length > limit:
            raise _too_large(limit, symbol, resp.status)
        if length is not None and not resp.headers.get("Content-Encoding"):
            return await resp.read()  # identity: the length announced is the length read
        chunks, size = [], 0
        async for chunk in resp.content.iter_chunked(1 << 16):
            size += len(chunk)
            if size > limit:
                raise _too_large(limit, symbol, resp.status)
            chunks.append(chunk)
        return b"".join(chunks)

    def _decoded(
        self, symbol: str, expiry: str | None, body: bytes, status: int, latency: float
    ) -> Fetched:
        notes: list[str] = []
        try:
            snap = decode_flow_gex(body, symbol=symbol, notes=notes)
        except PayloadError as exc:
            message = redaction.redact(str(exc))
            raise MalformedPayload(message, symbol=symbol, status=status) from None
        for note in notes:
            log.warning("payload normalised", symbol=symbol, note=note)
        if expiry is not None and snap.expiry is not None and snap.expiry != expiry:
            raise MalformedPayload(
                f"invalid Flow GEX payload: expiry {snap.expiry!r} does not match the requested "
                f"{expiry!r}",
                symbol=symbol,
                status=status,
            )
        as_of = snap.as_of_ms
        refused = self.as_of_window.check(as_of, int(self._wall_clock() * 1000))
        if refused is not None:
            reason, message = refused
            SNAPSHOTS_REFUSED.labels(reason).inc()
            raise RefusedSnapshot(message, reason=reason, symbol=symbol, status=status)
        key = (symbol.upper(), expiry)
        last = self._last_as_of.get(key)
        # the provider caches ~15 s: the same as_of again is not new data; neither is an older
        # one (a lagging cache node), which the as_of-keyed stream would refuse anyway
        repeated = last is not None and as_of <= last
        if not repeated:
            self._last_as_of[key] = as_of
        return Fetched(snapshot=snap, repeated=repeated, body_bytes=len(body), latency_s=latency)

    def _note_limits(
        self, status: int, headers: CIMultiDictProxy[str], symbol: str
    ) -> float | None:
        """Close the key's gate as the response's headers ask; return a 429/5xx's wait."""
        if status == 429:
            wait = parse_retry_after(headers.get("Retry-After"))
            if wait is None:
                wait = parse_reset(headers.get("X-RateLimit-Reset"))
            if wait is None:
                wait = DEFAULT_RETRY_AFTER_S
            if wait > MAX_WAIT_S:
                log.warning("upstream asked for an absurd wait; clamped", retry_after_s=wait)
                wait = MAX_WAIT_S
            until = self.limiter.close_gate(wait)
            log.warning(
                "upstream rate limited; holding every request on the key",
                symbol=symbol,
                retry_after_s=round(wait, 3),
                gate_s=round(until - self.limiter.now(), 3),
            )
            return wait
        if status >= 500:
            wait = parse_retry_after(headers.get("Retry-After"))
            if wait is not None:
                wait = min(wait, MAX_WAIT_S)
                self.limiter.close_gate(wait)
            return wait
        if _exhausted(headers.get("X-RateLimit-Remaining")):
            reset = parse_reset(headers.get("X-RateLimit-Reset"))
            if reset:
                self.limiter.close_gate(reset)
                log.info("upstream budget exhausted; waiting for reset", reset_s=round(reset, 3))
        return None


def _exhausted(remaining: str | None) -> bool:
    if remaining is None:
        return False
    try:
        return float(remaining) <= 0
    except ValueError:
        return False


# --- error mapping -------------------------------------------------------------------------


def _too_large(limit: int, symbol: str, status: int) -> MalformedPayload:
    return MalformedPayload(
        f"response body larger than {limit} bytes (decompressed), not read",
        symbol=symbol,
        status=status,
    )


def _snippet(text: str) -> str:
    text = _WS.sub(" ", text).strip()
    if len(text) > MAX_MESSAGE_CHARS:
        text = text[: MAX_MESSAGE_CHARS - 3] + "..."
    return text


def _server_message(body: bytes) -> tuple[str, dict[str, Any]]:
    """The human message of an error body and the body as a dict (empty if not JSON)."""
    try:
        data = msgspec.json.decode(body)
    except msgspec.DecodeError:
        data = None
    if isinstance(data, dict):
        for field in ("message", "detail", "error"):
            value = data.get(field)
            if value is None or value == "":
                continue
            text = value if isinstance(value, str) else msgspec.json.encode(value).decode()
            error = data.get("error")
            if field != "error" and isinstance(error, str) and error and error not in text:
                text = f"{text} [{error}]"
            return _snippet(text), data
        return _snippet(body.decode("utf-8", "replace")) or "(no message)", data
    text = _snippet(body.decode("utf-8", "replace"))
    return (text or "(empty body)"), {}


def _error_for(
    status: int,
    headers: CIMultiDictProxy[str],
    body: bytes,
    symbol: str,
    retry_after: float | None,
) -> SourceError:
    message, data = _server_message(body)
    message = redaction.redact(message)
    if status == 400:
        return BadRequest(message, symbol=symbol, status=status)
    if status == 401:
        return AuthError(message, symbol=symbol, status=status)
    if status == 403:
        current = data.get("current_plan")
        required = data.get("required_plan")
        return PlanError(
            message,
            current_plan=redaction.redact(str(current)) if current is not None else None,
            required_plan=redaction.redact(str(required)) if required is not None else None,
            symbol=symbol,
            status=status,
        )
    if status == 404:
        return UnknownSymbol(message, symbol=symbol, status=status)
    if status == 429:
        return RateLimited(
            message,
            retry_after=retry_after if retry_after is not None else DEFAULT_RETRY_AFTER_S,
            symbol=symbol,
            status=status,
        )
    if status >= 500 or status == 408:
        # 408 is the server timing the request out: as transient as our own timeout
        err = TransientError(message, symbol=symbol, status=status)
        if retry_after is not None:
            err.retry_after = retry_after
        return err
    if 300 <= status < 400:
        location = headers.get("Location")
        where = f" to {redaction.redact(location)}" if location else ""
        return SourceError(
            f"unexpected redirect{where} (not followed: it would carry the API key): {message}",
            symbol=symbol,
            status=status,
        )
    return SourceError(message, symbol=symbol, status=status)
