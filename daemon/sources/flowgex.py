"""`FlowGexClient`: the upstream Flow GEX client (shared/flowgex-api.md), one attempt per fetch.

Budget and gate design
----------------------
Everything the provider limits is limited per API key, so the client keeps one `KeyLimiter`
(ratelimit.py) that every fetch on the key goes through, right before its request is sent:

1. `max_concurrency` bounds requests in flight and connections open (the HTTP client's pool,
   sources/http.py: a lean keep-alive client, because aiohttp's per-request machinery was
   15-22% of the daemon's CPU per stored snapshot).
2. Inside it, once a connection is ready, `KeyLimiter.acquire()` waits for the *gate* (no
   request before a Retry-After window ends) and then for a slot of the *budget* (GCRA at
   `requests_per_min` with a small burst). Slots are reserved before sleeping, so concurrent
   waiters are served in order; a waiter re-checks the gate after its budget sleep, so a 429
   that arrives while others queue holds them too. The request is sent with no await in
   between (a connection the server closed as it was sent is retried once, through the gate
   again).
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
redirect names. No proxy from the environment is used either.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

import msgspec
import structlog
from multidict import CIMultiDict

from gex_alertd import __version__, redaction
from gex_alertd.asof_window import AsOfWindow
from gex_alertd.model import PayloadError, decode_flow_gex, decode_json
from gex_alertd.ops.metrics import RATE_LIMIT_WAIT, REQUEST_LATENCY, SNAPSHOTS_REFUSED
from gex_alertd.quoted import printable, quoted
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
from gex_alertd.sources.http import (
    BodyTooLarge,
    HttpClient,
    HttpError,
    HttpTimeout,
    UnsupportedEncoding,
)
from gex_alertd.sources.ratelimit import MAX_WAIT_S, KeyLimiter, parse_reset, parse_retry_after

if TYPE_CHECKING:
    from gex_alertd.config import SourceConfig

__all__ = ["FlowGexClient"]

PATH = "/v1/flow/gex/"
SETTLED_PATH = "/v1/exposure/gex/"
DEFAULT_RETRY_AFTER_S = 1.0
MAX_MESSAGE_CHARS = 300
_REQUEST_CACHE_MAX = 512  # requests kept built (~200 bytes each); past it built per poll
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
        # made here so a bad base_url or header fails at construction; its pool is per loop
        self._http: HttpClient | None = self._new_http()
        self._requests: dict[tuple[str, str | None], bytes] = {}
        self._last_as_of: dict[tuple[str, str | None], int] = {}
        self._normalised: set[tuple[str, str | None]] = set()  # logged, still normalised

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

    def _new_http(self) -> HttpClient:
        return HttpClient(self.base_url, max_connections=self.max_concurrency)

    def _client(self) -> HttpClient:
        http = self._http
        if http is None:  # closed: new connections from here on
            http = self._http = self._new_http()
        return http

    async def close(self) -> None:
        """Close every connection; a later fetch opens new ones."""
        http, self._http = self._http, None
        if http is not None:
            await http.close()

    async def __aenter__(self) -> FlowGexClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- fetching ------------------------------------------------------------------------------

    def _request(self, path: str, symbol: str, query: dict[str, str] | None) -> bytes:
        # quote everything: a symbol like BRK/B must stay one path segment
        target = f"{path}{quote(symbol, safe='')}"
        if query:
            target = f"{target}?{urlencode(query)}"
        return self._client().request_bytes(target, self._headers)

    async def fetch(self, symbol: str, expiry: str | None = None) -> Fetched:
        """One HTTP attempt, after the key's budget and any Retry-After window allow it."""
        key = (symbol, expiry)
        request = self._requests.get(key)
        if request is None:
            request = self._request(PATH, symbol, {"expiry": expiry} if expiry else None)
            if len(self._requests) >= _REQUEST_CACHE_MAX:
                self._requests.clear()
            self._requests[key] = request
        status, body, latency = await self._get(request, symbol)
        return self._decoded(symbol, expiry, body, status, latency)

    async def fetch_settled(self, symbol: str, expiry: str | None = None) -> bytes:
        """The raw body of `GET /v1/exposure/gex/{symbol}` (the settled profile), one attempt
        on the same key, budget, timeout and body bound as `fetch`; decoding is the caller's
        (`gex_alertd.settled`). Raises the same SourceErrors."""
        query = {"expiration": expiry} if expiry is not None else None
        return (await self._get(self._request(SETTLED_PATH, symbol, query), symbol))[1]

    async def _gate(self) -> float:
        waited = await self.limiter.acquire()
        if waited > 0:
            RATE_LIMIT_WAIT.inc(waited)
        return waited

    async def _get(self, request: bytes, symbol: str) -> tuple[int, bytes, float]:
        """(status, body, latency) of a 2xx; any other status raises its SourceError.

        The gate runs once a connection is ready and the send follows it with no await in
        between (see ratelimit.KeyLimiter.acquire); the response's headers close it, if they
        say so, before its body is read (`on_head`), so nobody slips through. The body is
        bounded after decompression (a gzip bomb is refused at `max_body_bytes`, http.py)."""
        http = self._client()

        def on_head(status: int, headers: CIMultiDict[str]) -> float | None:
            return self._note_limits(status, headers, symbol)

        try:
            # `timeout_s` read per request, so a change applies to the next one
            resp = await http.get(
                request,
                timeout_s=self.timeout_s,
                max_body_bytes=self.max_body_bytes,
                on_head=on_head,
                gate=self._gate,
            )
        except HttpTimeout:
            REQUEST_LATENCY.observe(self.timeout_s)
            raise TransientError(
                f"no complete response within {self.timeout_s:g} s", symbol=symbol
            ) from None
        except BodyTooLarge as exc:
            raise _too_large(self.max_body_bytes, symbol, exc.status) from None
        except UnsupportedEncoding as exc:
            raise MalformedPayload(
                redaction.redact(str(exc)), symbol=symbol, status=exc.status
            ) from None
        except HttpError as exc:
            raise TransientError(
                redaction.redact(f"request failed: {type(exc).__name__}: {exc}"), symbol=symbol
            ) from None
        latency = resp.latency_s
        REQUEST_LATENCY.observe(latency)
        status = resp.status
        if 200 <= status < 300:
            return status, resp.body, latency
        raise _error_for(status, resp.headers, resp.body, symbol, resp.head_note)

    def _decoded(
        self, symbol: str, expiry: str | None, body: bytes, status: int, latency: float
    ) -> Fetched:
        notes: list[str] = []
        try:
            snap = decode_flow_gex(body, symbol=symbol, notes=notes, aggregated=expiry is None)
        except PayloadError as exc:
            # bounded, then redacted (_snippet): it may quote the body, of any length
            raise MalformedPayload(_snippet(str(exc)), symbol=symbol, status=status) from None
        # once per target while its payloads keep needing it, not once per poll (a line per
        # poll at 200 symbols polled fast is thousands a minute); again after an orderly one
        target = (symbol, expiry)
        if notes and target not in self._normalised:
            self._normalised.add(target)
            for note in notes:
                log.warning(
                    "payload normalised", symbol=symbol, note=note,
                    until="logged once until this target's payloads need no normalising",
                )  # fmt: skip
        elif not notes and target in self._normalised:
            self._normalised.discard(target)
        if expiry is not None and snap.expiry is not None and snap.expiry != expiry:
            raise MalformedPayload(
                f"invalid Flow GEX payload: expiry {quoted(snap.expiry)} does not match the "
                f"requested {expiry!r}",
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

    def _note_limits(self, status: int, headers: CIMultiDict[str], symbol: str) -> float | None:
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
    """Upstream text (an error body, a header) as one bounded line, redacted: the only
    redaction an error's text needs, so callers use it as it is."""
    # redacted last of what can add characters (a control character made "?" could complete a
    # URL with a query) and before the cut (after it, the half of an echoed key that is kept
    # leaked), but on a window only, so a 16 MB error body costs what a short one does; a key
    # straddling the window's end is past the cut anyway
    window = printable(_WS.sub(" ", text)[: 4 * MAX_MESSAGE_CHARS])
    text = redaction.redact(window).strip()
    if len(text) > MAX_MESSAGE_CHARS:
        text = text[: MAX_MESSAGE_CHARS - 3] + "..."
    return text


def _server_message(body: bytes) -> tuple[str, dict[str, Any]]:
    """The human message of an error body and the body as a dict (empty if not JSON)."""
    try:
        data = decode_json(body)
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
    headers: CIMultiDict[str],
    body: bytes,
    symbol: str,
    retry_after: float | None,
) -> SourceError:
    message, data = _server_message(body)  # every text here comes redacted from _snippet
    if status == 400:
        return BadRequest(message, symbol=symbol, status=status)
    if status == 401:
        return AuthError(message, symbol=symbol, status=status)
    if status == 403:
        current = data.get("current_plan")
        required = data.get("required_plan")
        return PlanError(
            message,
            current_plan=_snippet(str(current)) if current is not None else None,
            required_plan=_snippet(str(required)) if required is not None else None,
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
        where = f" to {_snippet(location)}" if location else ""
        return SourceError(
            f"unexpected redirect{where} (not followed: it would carry the API key): {message}",
            symbol=symbol,
            status=status,
        )
    return SourceError(message, symbol=symbol, status=status)
