"""Typed upstream errors (flowgex-api.md "Errors"), each carrying the server's own message."""

from __future__ import annotations


class SourceError(Exception):
    """Base for everything a fetch can raise. `retryable` says whether backing off helps."""

    retryable = False

    def __init__(self, message: str, *, symbol: str | None = None, status: int | None = None):
        self.message = message
        self.symbol = symbol
        self.status = status
        where = f"{symbol}: " if symbol else ""
        code = f"HTTP {status}: " if status else ""
        super().__init__(f"{where}{code}{message}")


class BadRequest(SourceError):
    """400: the symbol or expiry of a watch entry is malformed. A config error, not retried hot."""


class AuthError(SourceError):
    """401: missing or invalid key."""


class PlanError(AuthError):
    """403: the key's plan lacks the endpoint."""

    def __init__(
        self,
        message: str,
        *,
        current_plan: str | None = None,
        required_plan: str | None = None,
        symbol: str | None = None,
        status: int | None = None,
    ):
        self.current_plan = current_plan
        self.required_plan = required_plan
        if current_plan or required_plan:
            plans = f"current plan: {current_plan or '?'}, required: {required_plan or '?'}"
            message = f"{message} ({plans})"
        super().__init__(message, symbol=symbol, status=status)


class UnknownSymbol(SourceError):
    """404: the provider does not know the symbol."""


class RateLimited(SourceError):
    """429: wait `retry_after` seconds before any request on the same key."""

    retryable = True

    def __init__(
        self,
        message: str,
        *,
        retry_after: float,
        symbol: str | None = None,
        status: int | None = None,
    ):
        self.retry_after = retry_after
        super().__init__(message, symbol=symbol, status=status)


class TransientError(SourceError):
    """5xx, timeout, connection failure: back off and try again."""

    retryable = True
    # a 503 may say how long the maintenance lasts: the client sets it, Backoff honours it
    retry_after: float | None = None


class MalformedPayload(TransientError):
    """A 200 whose body is not a valid Flow GEX snapshot: nothing from it is stored."""


class RefusedSnapshot(MalformedPayload):
    """A valid snapshot whose `as_of` is outside the window the daemon stores (asof_window):
    too far ahead of the clock, or older than the retention. Nothing from it is stored, and
    its `as_of` is not remembered as seen."""

    def __init__(self, message: str, *, reason: str, symbol: str | None, status: int | None):
        self.reason = reason  # asof_window.FUTURE | asof_window.EXPIRED
        super().__init__(message, symbol=symbol, status=status)
