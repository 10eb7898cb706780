"""`HttpClient`: a lean HTTP/1.1 keep-alive GET client for one upstream origin.

Why not aiohttp here: on the poll path aiohttp's per-request machinery (request and response
objects, the stream reader, the timer and connector bookkeeping) cost ~60-90 us of CPU per
request, 15-22% of the daemon's CPU per stored snapshot (bench/README.md, pipeline section).
This client does only what the Flow GEX poll needs: a prebuilt request (`request_bytes`) written
in one call on a pooled connection, the response parsed by llhttp (`httptools`, C) straight in
the protocol's `data_received`, one future per request.

What it guarantees (tests/sources/test_http_client.py):
- at most `max_connections` requests in flight and connections open; idle connections kept
  alive and reused, most recent first;
- `http` and `https` (`ssl.create_default_context()`, SNI); no proxy, no redirect followed
  (a 3xx is returned like any status: the caller decides);
- a response's body by Content-Length, chunked or read to the close; gzip/deflate inflated in
  bounded steps, `max_body_bytes` counted AFTER inflating (a bomb is refused at the bound, not
  inflated whole; bytes after the compressed stream's end dropped and counted, as urllib3
  does); the compressed bytes too are bounded by it (empty members or stored blocks inflate to
  nothing); a Content-Length above the bound is refused before reading; another
  Content-Encoding is `UnsupportedEncoding`; 1xx responses skipped; headers bounded;
- `Connection: close`, HTTP/1.0, leftover bytes after a response, a parse error, an error or a
  timeout: the connection is closed, never reused;
- the whole request (connecting, sending, the response) within `timeout_s`, not counting the
  time the caller's `gate` waits; a reused connection that the server closed before any byte
  of the response, or any connection closed before the request was written (while the gate
  waited), is retried once on a new one (a GET is idempotent), never once a byte came.

What it must never do: put the request (it carries the API key) into an error message.
Errors are `HttpError`s whose messages name the cause and the origin, nothing else.
"""

from __future__ import annotations

import asyncio
import math
import re
import ssl
import time
import zlib
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import httptools
from multidict import CIMultiDict

from gex_alertd.quoted import quoted
from gex_alertd.urls import header_name_ok as _token_ok
from gex_alertd.urls import origin_refusal

__all__ = [
    "BodyTooLarge",
    "ConnectError",
    "ConnectionLost",
    "HttpClient",
    "HttpError",
    "HttpTimeout",
    "ProtocolError",
    "Response",
    "UnsupportedEncoding",
]

MAX_HEADER_BYTES = 64 * 1024
# inflate at most this much per step: what a bomb costs before it is refused is the bound + this
INFLATE_STEP = 64 * 1024
ACCEPT_ENCODING = "gzip, deflate"
_HEADER_BLOCKS_MAX = 8  # sets of request headers kept joined (a client uses one or two)
_GZIP_WBITS = 16 + zlib.MAX_WBITS
_GZIP_MAGIC = b"\x1f\x8b"  # a gzip member's first two bytes


class HttpError(Exception):
    """Base of every failure of a request; the message names the cause, never the request."""


class ConnectError(HttpError):
    """No connection could be made (refused, unreachable, name resolution, TLS handshake)."""


class ConnectionLost(HttpError):
    """The connection closed before the response was complete."""


class ProtocolError(HttpError):
    """The bytes received are not a valid HTTP/1.1 response (or not one this client reads)."""


class HttpTimeout(HttpError):
    """No complete response within the time allowed."""


class BodyTooLarge(HttpError):
    """The body (after inflating) passed `max_body_bytes`; it was not read further."""

    def __init__(self, limit: int, status: int) -> None:
        self.limit = limit
        self.status = status
        super().__init__(f"response body larger than {limit} bytes (decompressed), not read")


class UnsupportedEncoding(ProtocolError):
    """A Content-Encoding this client does not decode (it asks for gzip and deflate only)."""

    def __init__(self, encoding: str, status: int) -> None:
        self.encoding = encoding
        self.status = status
        # clipped: the header may be 64 KB, and every message goes through redaction
        super().__init__(f"unsupported Content-Encoding {quoted(encoding)}")


class _Stale(Exception):
    """A reused connection closed before any byte of the response, or any connection closed
    before the request was written: the GET may be retried."""


class Response:
    """A complete response: `status`, `headers` (case-insensitive), `body` (decoded)."""

    __slots__ = ("body", "head_note", "headers", "latency_s", "status")

    def __init__(self, status: int, headers: CIMultiDict[str], body: bytes, head_note: Any) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        # what the caller's on_head returned for this response's headers
        self.head_note = head_note
        self.latency_s = 0.0


OnHead = Callable[[int, CIMultiDict[str]], Any]
Gate = Callable[[], Awaitable[float]]


class _Connection(asyncio.Protocol):
    """One keep-alive connection; parses each response as it arrives (llhttp callbacks)."""

    def __init__(self, max_header_bytes: int) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.served = 0  # responses completed on it: a reused connection may be stale
        self._parser = httptools.HttpResponseParser(self)
        self._max_header_bytes = max_header_bytes
        self._waiter: asyncio.Future[Response] | None = None
        self._limit = 0
        self._on_head: OnHead | None = None
        self._reset_message()
        self._got_bytes = False
        self._done = False
        self._keep = False

    def _reset_message(self) -> None:
        self._raw_headers: list[tuple[bytes, bytes]] = []
        self._head_raw = 0  # bytes received while the headers were not complete
        self._trailer_bytes = 0
        self._headers_done = False
        self._status = 0
        self._headers: CIMultiDict[str] | None = None
        self._head_note: Any = None
        self._chunks: list[bytes] = []
        self._size = 0
        self._inflater: Any = None  # zlib decompress object, or None for identity
        self._gzip = False  # gzip: a body of several members is one body
        self._member_out = -1  # bytes a gzip member after the first gave; -1: the first's
        self._trailing = False  # the compressed stream has ended: what follows is dropped
        self._deflate = False  # deflate, zlib-wrapped or raw not known yet
        self._fed = False  # a compressed byte came
        self._wire = 0  # compressed bytes fed
        self._to_eof = False  # body delimited by the connection's close
        self._error: BaseException | None = None

    # --- the request ------------------------------------------------------------------------

    def send(
        self,
        request: bytes,
        limit: int,
        on_head: OnHead | None,
        waiter: asyncio.Future[Response],
    ) -> None:
        self._waiter = waiter
        self._limit = limit
        self._on_head = on_head
        self._got_bytes = False
        self._done = False
        self._keep = False
        self._reset_message()
        transport = self.transport
        assert transport is not None
        if self.closed or transport.is_closing():
            # closed while the request waited (on the gate: a Retry-After window outlasts an
            # idle timeout): nothing was sent, so it may go on a new connection. Written to the
            # dead transport it waited for the timeout (asyncio) or raised RuntimeError (uvloop)
            waiter.set_exception(_Stale())
            return
        transport.write(request)

    @property
    def reusable(self) -> bool:
        return self._done and self._keep and not self.closed

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def _fail(self, exc: BaseException) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        self.abort()

    # --- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # no isinstance check: uvloop's TCPTransport is no subclass of asyncio.Transport, and
        # an assertion raised here left every connection without its transport under uvloop
        self.transport = transport  # type: ignore[assignment]  # a stream transport, any loop

    def data_received(self, data: bytes) -> None:
        if self._waiter is None or self._done:
            # bytes nobody asked for: the connection's framing cannot be trusted any more
            self._keep = False
            self.abort()
            return
        self._got_bytes = True
        if not self._headers_done:
            self._head_raw += len(data)
        try:
            self._parser.feed_data(data)
        except Exception as exc:
            if self._done:  # a complete response followed by garbage: keep it, drop the line
                self._keep = False
                self.abort()
                return
            error = self._error
            if error is None:
                error = ProtocolError(f"malformed HTTP response: {_parser_reason(exc)}")
            self._fail(error)
            return
        if not self._headers_done and self._head_raw > self._max_header_bytes:
            # still no end of the headers (one endless line never reaches on_header)
            limit = self._max_header_bytes
            self._fail(ProtocolError(f"response headers larger than {limit} bytes"))

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost decides what the EOF means

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if self._to_eof and self._headers_done and self._error is None and exc is None:
            try:  # a body delimited by the close: an orderly close completes it, a reset not
                self._finish(keep=False)
            except Exception as error:
                self._fail(error)
            return
        if not self._got_bytes and self.served:
            waiter.set_exception(_Stale())
            return
        why = f": {exc}" if exc is not None else ""
        if not self._got_bytes:
            waiter.set_exception(ConnectionLost(f"connection closed before any response{why}"))
        elif not self._headers_done:
            waiter.set_exception(ConnectionLost(f"connection closed inside the headers{why}"))
        else:
            waiter.set_exception(
                ConnectionLost(f"connection closed after {self._size} body bytes{why}")
            )

    # --- llhttp callbacks (an exception stops the parser; data_received reports it) --------

    def on_message_begin(self) -> None:
        if self._done:
            raise ProtocolError("bytes after the end of the response")

    def on_header(self, name: bytes, value: bytes) -> None:
        # what a chunk holds is bounded (the transport's read size); the total is checked at
        # the end of the headers, and between chunks in data_received
        if self._headers_done:
            self._trailer(name, value)
            return
        self._raw_headers.append((name, value))

    def _trailer(self, name: bytes, value: bytes) -> None:
        # trailers (after a chunked body) are not kept, nobody reads them; only their size is
        # bounded: kept, 12 MB of trailer lines held 126 MB until the deadline
        self._trailer_bytes += len(name) + len(value) + 4
        limit = self._max_header_bytes
        if self._trailer_bytes > limit:
            raise self._set_error(ProtocolError(f"response trailers larger than {limit} bytes"))

    def on_headers_complete(self) -> None:
        raw = self._raw_headers
        limit = self._max_header_bytes
        # only when the bytes seen so far pass the bound can the headers themselves
        if self._head_raw > limit and sum(len(n) + len(v) + 4 for n, v in raw) > limit:
            raise self._set_error(ProtocolError(f"response headers larger than {limit} bytes"))
        status = self._parser.get_status_code()
        self._status = status
        headers: CIMultiDict[str] = CIMultiDict(
            [(n.decode("latin-1"), v.decode("latin-1")) for n, v in raw]
        )
        self._headers = headers
        self._headers_done = True
        if status < 200:
            if status < 100:  # llhttp takes any three digits; 0xx is no status at all
                raise self._set_error(ProtocolError(f"invalid status code {status}"))
            return  # 1xx: no body, the real response follows
        if self._on_head is not None:
            try:
                self._head_note = self._on_head(status, headers)
            except Exception as exc:
                raise self._set_error(exc) from None
        length = headers.get("Content-Length")
        if length is not None and length.isdigit() and int(length) > self._limit:
            raise self._set_error(BodyTooLarge(self._limit, status))
        encoding = headers.get("Content-Encoding")
        if encoding is not None:
            self._set_inflater(encoding.strip().lower(), status)
        if (
            length is None
            and "chunked" not in headers.get("Transfer-Encoding", "").lower()
            and status not in (204, 304)
        ):
            self._to_eof = True

    def _set_inflater(self, encoding: str, status: int) -> None:
        if encoding in ("gzip", "x-gzip"):
            self._inflater = zlib.decompressobj(_GZIP_WBITS)
            self._gzip = True
        elif encoding == "deflate":
            # zlib-wrapped or raw: told by the first two bytes (_deflate_start)
            self._inflater = zlib.decompressobj()
            self._deflate = True
            self._deflate_head = b""
        elif encoding not in ("", "identity"):
            raise self._set_error(UnsupportedEncoding(encoding, status))

    def on_body(self, body: bytes) -> None:
        if self._inflater is None:
            self._size += len(body)
            if self._size > self._limit:
                raise self._set_error(BodyTooLarge(self._limit, self._status))
            self._chunks.append(body)
        else:
            self._inflate(body)

    def _inflate(self, data: bytes) -> None:
        self._fed = True
        # counted as they come too: empty gzip members or empty stored blocks inflate to
        # nothing, and were read without end (timeout_s the only bound); no larger than a
        # Content-Length this bound lets through
        self._wire += len(data)
        if self._wire > self._limit:
            raise self._set_error(BodyTooLarge(self._limit, self._status))
        if self._trailing:
            self._drop(data)
            return
        if self._deflate:
            data = self._deflate_start(data)
            if not data:
                return
        inflater = self._inflater
        self._feed(inflater, data)
        while inflater.unused_data and not self._trailing:
            rest = inflater.unused_data
            # zlib keeps what follows the stream's end in `unused_data`, counted by no bound:
            # 16 MB behind a 9-byte gzip body were held whole. A gzip body may be several
            # members one after another (RFC 1952 2.2): the next one is inflated like the
            # first, into the same bound. Anything else (zero padding, a proxy's stray bytes)
            # is dropped, counted in the bound, as the provider's SDK (requests: urllib3's
            # decoders) and browsers do (curl and aiohttp 3.14 refuse it): refused, such an
            # upstream, which the SDK reads, stored nothing here, ever
            if not self._gzip or not _GZIP_MAGIC.startswith(rest[:2]):
                self._drop(rest)
                break
            inflater = self._inflater = zlib.decompressobj(_GZIP_WBITS)
            self._member_out = 0
            self._feed(inflater, rest)

    def _drop(self, data: bytes) -> None:
        """Bytes after the compressed stream's end: counted in the bound, never kept."""
        self._trailing = True
        self._size += len(data)
        if self._size > self._limit:
            raise self._set_error(BodyTooLarge(self._limit, self._status))

    def _feed(self, inflater: Any, data: bytes) -> None:
        """`data` into `inflater`, its output taken INFLATE_STEP bytes at a time (a bomb is
        refused at the bound, not inflated whole)."""
        try:
            out = inflater.decompress(data, INFLATE_STEP)
            self._take(out)
            while inflater.unconsumed_tail:
                out = inflater.decompress(inflater.unconsumed_tail, INFLATE_STEP)
                self._take(out)
        except zlib.error as exc:
            if self._member_out == 0:  # no member after all (`\x1f` then garbage): dropped
                self._drop(data)
                return
            raise self._set_error(ProtocolError(f"cannot decompress the body: {exc}")) from None

    def _deflate_start(self, data: bytes) -> bytes:
        """The body's first bytes once two are in: RFC 9110's deflate is zlib-wrapped, some
        servers send it raw, and a zlib header (method 8, the pair a multiple of 31) tells which.
        Decided by the first piece alone, a one-byte piece made raw deflate an error."""
        head = self._deflate_head + data
        if len(head) < 2:
            self._deflate_head = head
            return b""
        self._deflate = False
        self._deflate_head = b""
        if not (head[0] & 0x0F == 8 and ((head[0] << 8) | head[1]) % 31 == 0):
            self._inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        return head

    def _take(self, out: bytes) -> None:
        if out:
            if self._member_out >= 0:
                self._member_out += len(out)
            self._size += len(out)
            if self._size > self._limit:
                raise self._set_error(BodyTooLarge(self._limit, self._status))
            self._chunks.append(out)

    def on_message_complete(self) -> None:
        if self._status < 200:
            self._reset_message()
            return
        self._finish(keep=self._parser.should_keep_alive())

    def _finish(self, *, keep: bool) -> None:
        inflater = self._inflater
        # no body byte at all (a 204, an empty error page labelled gzip) is an empty body
        # (a member after the first that gave nothing yet is no member: dropped bytes)
        if inflater is not None and not inflater.eof and self._fed and self._member_out != 0:
            raise self._set_error(ProtocolError("the compressed body ends before its end"))
        chunks = self._chunks
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self._chunks = []
        self._done = True
        self._keep = keep
        self.served += 1
        assert self._headers is not None and self._waiter is not None
        if not self._waiter.done():
            self._waiter.set_result(Response(self._status, self._headers, body, self._head_note))

    def _set_error(self, exc: BaseException) -> BaseException:
        self._error = exc
        return exc


def _parser_reason(exc: Exception) -> str:
    # httptools wraps a callback's exception; llhttp's own errors carry a short reason
    if isinstance(exc, httptools.HttpParserUpgrade):  # its text is only an offset
        return "the server switched protocols (101 or an Upgrade): not an HTTP/1.1 response"
    text = str(exc) or type(exc).__name__
    return text[:200]


class _Slots:
    """At most `n` requests in flight: a counting semaphore whose free permit is taken inline
    (`if slots.free: slots.free -= 1`, no coroutine) and whose released permit goes straight to
    the longest waiter. asyncio.Semaphore built a generator in every acquire (`locked()`) and a
    coroutine for it, on every request.

    A waiter cancelled before it got a permit leaves the queue; one cancelled after a release
    handed it a permit (but before it ran) passes that permit on: none is lost or doubled."""

    __slots__ = ("_waiters", "free")

    def __init__(self, n: int) -> None:
        self.free = n
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def wait(self, loop: asyncio.AbstractEventLoop) -> None:
        """Take a permit when none is free now (the caller took a free one inline)."""
        if self.free:
            self.free -= 1
            return
        fut: asyncio.Future[None] = loop.create_future()
        self._waiters.append(fut)
        try:
            await fut
        except BaseException:
            if fut.done() and not fut.cancelled():
                self.release()  # handed to us as we were cancelled: to the next one
            elif fut in self._waiters:  # not when a release passed over it, cancelled, already
                self._waiters.remove(fut)
            raise

    def release(self) -> None:
        waiters = self._waiters
        while waiters:
            fut = waiters.popleft()
            if not fut.done():
                fut.set_result(None)  # the permit changes hands: `free` stays as it is
                return
        self.free += 1


def _expire(waiter: asyncio.Future[Response], timeout_s: float) -> None:
    if not waiter.done():
        waiter.set_exception(HttpTimeout(f"no complete response within {timeout_s:g} s"))


class HttpClient:
    """GETs to one origin (`base_url`'s scheme, host and port) over pooled keep-alive
    connections. Create and use it inside one running loop; `close()` closes every connection."""

    def __init__(
        self,
        base_url: str,
        *,
        max_connections: int = 16,
        max_header_bytes: int = MAX_HEADER_BYTES,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"base_url must be http:// or https://, got {parts.scheme!r}")
        if not parts.hostname:
            raise ValueError("base_url has no host")
        refused = origin_refusal(base_url)
        if refused is not None:
            raise ValueError(f"base_url {refused}")
        if max_connections < 1:
            raise ValueError(f"max_connections must be >= 1, got {max_connections}")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.prefix = parts.path.rstrip("/")
        # Host as the URL spells it (an IPv6 literal keeps its brackets), default port omitted
        self.host_header = parts.netloc
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self._ssl: ssl.SSLContext | None = None
        if parts.scheme == "https":
            self._ssl = ssl_context if ssl_context is not None else ssl.create_default_context()
        self.max_connections = max_connections
        self._max_header_bytes = max_header_bytes
        self._slots = _Slots(max_connections)
        self._idle: list[_Connection] = []
        self._busy: set[_Connection] = set()
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        # the deadline of every response awaited (waiter -> (deadline, timeout_s)) and one timer
        # for the earliest: a timer per request (a TimerHandle, its heap push and cancel, the
        # heap rebuilt for the cancelled ones) was ~2 us of the poll's CPU, and responses come
        # long before their deadline, so the one timer is moved seldom
        self._awaited: dict[asyncio.Future[Response], tuple[float, float]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        # the header lines after the request line, checked and joined once per set of headers:
        # a client of many targets builds each request anew past its kept ones (flowgex)
        self._header_blocks: dict[tuple[tuple[str, str], ...], bytes] = {}

    def request_bytes(self, path_query: str, headers: Mapping[str, str]) -> bytes:
        """The bytes of `GET {prefix}{path_query}` with these headers (Host, Accept-Encoding
        added), built once and sent as is. `path_query` must be percent-encoded already. The
        header lines are checked and joined once per set of headers (2.7 -> ~1 us a request)."""
        items = tuple(headers.items())
        block = self._header_blocks.get(items)
        if block is None:
            lines = [f"Host: {self.host_header}"]
            for name, value in {**headers, "Accept-Encoding": ACCEPT_ENCODING}.items():
                if not _token_ok(name) or not _value_ok(value):
                    raise ValueError(f"header {name!r}: not a valid HTTP header name or value")
                lines.append(f"{name}: {value}")
            block = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
            if len(self._header_blocks) >= _HEADER_BLOCKS_MAX:
                self._header_blocks.clear()
            self._header_blocks[items] = block
        if not _value_ok(path_query) or " " in path_query or not path_query.startswith("/"):
            raise ValueError("request path: must start with / and hold no spaces or controls")
        return f"GET {self.prefix}{path_query} HTTP/1.1\r\n".encode("latin-1") + block

    async def get(
        self,
        request: bytes,
        *,
        timeout_s: float,
        max_body_bytes: int,
        on_head: OnHead | None = None,
        gate: Gate | None = None,
    ) -> Response:
        """Send `request` (from `request_bytes`) and return the complete response.

        `gate` is awaited once a connection is ready, right before each send (nothing awaited
        between its return and the write); its seconds of waiting are not counted against
        `timeout_s`. `on_head(status, headers)` runs as soon as a final response's headers are
        parsed, before its body is read; what it returns is `Response.head_note`."""
        if self._closed:
            raise ConnectError("the client is closed")
        loop = self._loop
        if loop is None:
            # looked up once: on Python 3.11 every get_running_loop() is a getpid() system call
            loop = self._loop = asyncio.get_running_loop()
        slots = self._slots
        if slots.free:
            slots.free -= 1
        else:
            await slots.wait(loop)
        try:
            started = loop.time()
            deadline = started + timeout_s
            conn = self._take_idle()
            if conn is None:
                conn = await self._connect(loop, deadline, timeout_s)
            try:
                if gate is not None:
                    deadline += await gate()
                sent = time.monotonic()
                try:
                    response = await self._exchange(loop, conn, request, max_body_bytes, on_head,
                                                    deadline, timeout_s)  # fmt: skip
                except _Stale:
                    # the server closed the idle connection as we sent: once, on a new one
                    self._busy.discard(conn)
                    conn = await self._connect(loop, deadline, timeout_s)
                    if gate is not None:
                        deadline += await gate()
                    sent = time.monotonic()
                    try:
                        response = await self._exchange(loop, conn, request, max_body_bytes,
                                                        on_head, deadline, timeout_s)  # fmt: skip
                    except _Stale:
                        raise ConnectionLost("connection closed before any response") from None
                response.latency_s = time.monotonic() - sent
            finally:
                self._release(conn)
            return response
        finally:
            self._slots.release()

    async def _exchange(
        self,
        loop: asyncio.AbstractEventLoop,
        conn: _Connection,
        request: bytes,
        max_body_bytes: int,
        on_head: OnHead | None,
        deadline: float,
        timeout_s: float,
    ) -> Response:
        waiter: asyncio.Future[Response] = loop.create_future()
        conn.send(request, max_body_bytes, on_head, waiter)
        self._awaited[waiter] = (deadline, timeout_s)
        if deadline < self._timer_at:
            self._arm(loop, deadline)
        try:
            return await waiter
        finally:
            del self._awaited[waiter]

    def _arm(self, loop: asyncio.AbstractEventLoop, at: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = loop.call_at(at, self._expire_due, loop)
        self._timer_at = at

    def _expire_due(self, loop: asyncio.AbstractEventLoop) -> None:
        """The timer: every response awaited past its deadline fails with HttpTimeout (each at
        its own deadline: the timer is always set for the earliest one still awaited)."""
        due = max(loop.time(), self._timer_at)  # a timer may fire a clock tick early
        self._timer, self._timer_at = None, math.inf
        earliest = math.inf
        for waiter, (deadline, timeout_s) in list(self._awaited.items()):
            if deadline <= due:
                _expire(waiter, timeout_s)
            elif not waiter.done():
                earliest = min(earliest, deadline)
        if earliest < math.inf:
            self._arm(loop, earliest)

    def _take_idle(self) -> _Connection | None:
        idle = self._idle
        while idle:
            conn = idle.pop()  # the most recently used: the least likely to be stale
            if not conn.closed:
                self._busy.add(conn)
                return conn
        return None

    async def _connect(
        self, loop: asyncio.AbstractEventLoop, deadline: float, timeout_s: float
    ) -> _Connection:
        if self._closed:
            raise ConnectError("the client is closed")
        where = f"{self.host}:{self.port}"
        try:
            async with asyncio.timeout_at(deadline):
                _, conn = await loop.create_connection(
                    lambda: _Connection(self._max_header_bytes),
                    self.host,
                    self.port,
                    ssl=self._ssl,
                    server_hostname=self.host if self._ssl is not None else None,
                )
        except TimeoutError:
            raise HttpTimeout(f"no complete response within {timeout_s:g} s") from None
        except ssl.SSLError as exc:
            raise ConnectError(f"TLS handshake with {where} failed: {exc}") from None
        except OSError as exc:
            raise ConnectError(f"cannot connect to {where}: {exc}") from None
        except UnicodeError as exc:  # the IDNA codec, before any lookup (a label too long)
            raise ConnectError(f"cannot connect to {where}: the host name {exc}") from None
        if self._closed:
            conn.close()
            raise ConnectError("the client is closed")
        self._busy.add(conn)
        return conn

    def _release(self, conn: _Connection) -> None:
        self._busy.discard(conn)
        if conn.reusable and not self._closed:
            conn._waiter = None
            self._idle.append(conn)
        elif conn._done:
            conn.close()
        else:  # a response cut short: nothing of the connection's state can be trusted
            conn.abort()

    async def close(self) -> None:
        """Close every connection, idle or busy; the client refuses requests after it."""
        self._closed = True
        conns = [*self._idle, *self._busy]
        self._idle.clear()
        self._busy.clear()
        for conn in conns:
            conn.abort()
        # let the transports run their connection_lost before the loop may close
        if conns:
            await asyncio.sleep(0)


# one regex each, not a Python test per character: past the flowgex client's cache of built
# requests (512 targets) every poll builds its request, and the per-character checks were ~15 us
# of it. A token: urls.header_name_ok; a value or path: tab, visible ASCII and space, Latin-1
# above 0xa0 (no controls, so no CR/LF)
_VALUE = re.compile(r"[\t\x20-\x7e\xa0-\xff]*")


def _value_ok(value: str) -> bool:
    return _VALUE.fullmatch(value) is not None
