"""The hostile upstream: what a broken or malicious Flow GEX (or webhook receiver) can answer.

Built on the real aiohttp server of tests/support/upstream.py (`Upstream`, `Reply`): these are
replies to queue on it, or to serve from a receiver.

    async with Upstream() as up:
        up.push(gzip_bomb("SPY", expands_to=64 << 20), symbol="SPY")
        up.push(snapshot("SPY", as_of=FUTURE), symbol="SPY")

- `gzip_bomb`: a 200 with `Content-Encoding: gzip` whose small body inflates to valid JSON of
  any size (a Flow GEX snapshot with a long padding field);
- `snapshot(..., as_of=...)`: a valid body at a chosen instant (`FUTURE`, `ANCIENT`,
  `EPOCH`, `before_epoch()`, `recent()`);
- `bad_strikes(kind)`: negative, zero, duplicate or unsorted strikes;
- `lookalike_symbol`: the requested symbol spelled with a non-ASCII letter that upper-cases
  to the same ASCII (`ıwm` for IWM);
- `echo_headers`: a responder answering 401 with every request header in its message (what a
  misconfigured proxy does), so a test can prove the key never reaches a log line.
"""

from __future__ import annotations

import functools
import zlib
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from aiohttp import web

from tests.support.upstream import Reply, flow_gex_body

FUTURE = "2099-01-01T00:00:00Z"
ANCIENT = "2001-01-02T15:00:00Z"
EPOCH = "1970-01-01T00:00:00Z"


def before_epoch() -> str:
    return "1969-12-31T23:59:59Z"


def recent(seconds_ago: float = 0.0) -> str:
    """An ISO as_of `seconds_ago` before now (negative: in the future)."""
    ts = datetime.now(UTC) - timedelta(seconds=seconds_ago)
    return ts.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def snapshot(
    symbol: str, *, as_of: str | None = None, body_symbol: str | None = None, **overrides: Any
) -> Reply:
    """A valid body for `symbol` (naming `body_symbol` instead, when given)."""
    body = flow_gex_body(symbol, as_of=as_of or recent(), **overrides)
    if body_symbol is not None:
        body["symbol"] = body_symbol
    return Reply.json(body)


@functools.lru_cache(maxsize=4)
def _bomb_bytes(symbol: str, expands_to: int) -> bytes:
    head = msgspec.json.encode(flow_gex_body(symbol, as_of=recent(), strikes=4))[:-1]
    head += b',"pad":"'
    tail = b'"}'
    gz = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits 31: a gzip member
    out = [gz.compress(head)]
    block = b" " * (1 << 20)
    left = expands_to - len(head) - len(tail)
    while left > 0:
        out.append(gz.compress(block[: min(left, len(block))]))
        left -= len(block)
    out.append(gz.compress(tail))
    out.append(gz.flush())
    return b"".join(out)


def gzip_bomb(symbol: str = "SPY", *, expands_to: int = 64 << 20) -> Reply:
    """A valid snapshot padded to `expands_to` bytes, gzip-compressed (about 1/1000 of it)."""
    return Reply(200, _bomb_bytes(symbol, expands_to), headers={"Content-Encoding": "gzip"})


def gzipped(reply: Reply) -> Reply:
    """The same reply, gzip-compressed on the wire (a well-behaved compressing upstream)."""
    gz = zlib.compressobj(6, zlib.DEFLATED, 31)
    body = gz.compress(reply.body_bytes()) + gz.flush()
    return Reply(reply.status, body, headers={**reply.headers, "Content-Encoding": "gzip"})


def bad_strikes(symbol: str, kind: str, *, as_of: str | None = None) -> Reply:
    """`kind`: negative | zero | duplicate | unsorted."""
    body = flow_gex_body(symbol, as_of=as_of or recent(), strikes=8)
    rows = body["strikes"]
    if kind == "negative":
        rows[0]["strike"] = -5.0
    elif kind == "zero":
        rows[0]["strike"] = 0.0
    elif kind == "duplicate":
        rows[4] = dict(rows[3], call_oi=rows[3]["call_oi"] + 50_000)
    elif kind == "unsorted":
        rows.reverse()
    else:
        raise ValueError(f"unknown kind {kind!r}")
    return Reply.json(body)


def lookalike_symbol(symbol: str) -> str:
    """`symbol` lower-cased with its first `i` as a dotless `ı` (U+0131): str.upper() of it is
    `symbol` again, ASCII upper-casing is not."""
    low = symbol.lower()
    if "i" not in low:
        raise ValueError(f"{symbol!r} has no i to swap")
    return low.replace("i", "\u0131", 1)


def echo_headers(request: web.Request) -> Reply:
    """401 echoing every request header (the API key included) in the message."""
    echoed = "; ".join(f"{k}: {v}" for k, v in request.headers.items())
    return Reply.json({"message": f"unauthorized, you sent {echoed}"}, status=401)
