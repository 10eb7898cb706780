from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

from gex_alertd import redaction
from gex_alertd.notify.base import (
    Gone,
    Ok,
    Permanent,
    Retry,
    classify_http,
    describe_exc,
    parse_retry_after,
)
from gex_alertd.notify.throttle import TokenBucket
from gex_alertd.retry_timing import equal_jitter


def test_retry_after_seconds_date_and_garbage() -> None:
    assert parse_retry_after("12") == 12.0
    assert parse_retry_after(" 1.5 ") == 1.5
    when = datetime.now(UTC) + timedelta(seconds=90)
    secs = parse_retry_after(format_datetime(when, usegmt=True))
    assert secs is not None and 85 <= secs <= 90
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
    assert parse_retry_after("-4") == 0.0
    assert parse_retry_after("999999") == 3600.0  # a typo cannot stall a channel for days


def test_http_classification() -> None:
    assert isinstance(classify_http(200, "", None), Ok)
    assert isinstance(classify_http(204, "", None), Ok)
    for status in (408, 425, 429, 500, 502, 503, 504):
        assert isinstance(classify_http(status, "", None), Retry), status
    for status in (400, 401, 403, 404, 413, 422):
        assert isinstance(classify_http(status, "", None), Permanent), status
    assert classify_http(410, "gone", None) == Gone("HTTP 410: gone")
    assert classify_http(429, "slow down\n", "3") == Retry("HTTP 429: slow down", 3.0, True)
    assert classify_http(503, "", "3") == Retry("HTTP 503", 3.0, False)


def test_backoff_grows_with_jitter_and_stays_capped() -> None:
    for attempt in range(1, 12):
        step = min(30.0, 0.5 * 2 ** (attempt - 1))
        draws = [equal_jitter(attempt, 0.5, 30.0) for _ in range(200)]
        assert all(step / 2 <= d <= step for d in draws)
        assert len(set(draws)) > 1  # jittered


def test_token_bucket_holds_after_a_429() -> None:
    b = TokenBucket(rate=2.0)
    b.take()
    b.hold(5.0)
    # from the hold, not from ready_at()'s own refill, which counts the time in between
    held_at = b.stamp
    assert b.ready_at() - held_at >= 5.0 * 0.99


def test_exception_text_is_redacted() -> None:
    redaction.register("https://hooks.example.com/services/T1/B1/zzzzSECRETzzzz")
    exc = OSError("cannot reach https://hooks.example.com/services/T1/B1/zzzzSECRETzzzz")
    assert "zzzzSECRETzzzz" not in describe_exc(exc)


def test_a_secret_echoed_across_the_snippet_cut_is_redacted_whole() -> None:
    # an error page that echoes the request path (Express: "Cannot POST /path"), where a
    # webhook URL keeps its secret, with the path across the reason's 200-character cut:
    # cut first, the kept half no longer matched the registered secret and was logged
    url = "https://hooks.example.com/services/T9QQ/B9QQ/" + "k3yPart" * 6
    redaction.register(url)
    path = url.split("hooks.example.com")[1]
    body = "<pre>" + "x" * 170 + f" Cannot POST {path}</pre>"
    for status in (404, 503):
        outcome = classify_http(status, body, None)
        reason = outcome.reason  # type: ignore[union-attr]  # Permanent and Retry have one
        assert "services/T9QQ" not in reason, reason
        assert "Cannot POST /***" in reason, reason


def test_a_relative_redirect_loses_its_query_like_an_absolute_one() -> None:
    # an auth proxy in front of the receiver sends the hook to its login with the hook's path
    # (the secret, percent-encoded: no registered form matches it) in the query; shown()
    # dropped the query of an absolute Location only, and kept a relative one whole
    redaction.register("https://hooks.example.com/services/T7/B7/rel4tiveT0ken")
    rd = "%2Fservices%2FT7%2FB7%2Frel4tiveT0ken"
    for location in (f"/oauth2/start?rd={rd}", f"https://sso.example.com/start?rd={rd}"):
        outcome = classify_http(302, "", None, location=location)
        assert isinstance(outcome, Permanent)
        assert "rel4tiveT0ken" not in outcome.reason, outcome.reason
        assert "start?…" in outcome.reason, outcome.reason
