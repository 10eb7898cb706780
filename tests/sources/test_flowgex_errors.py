"""Every upstream error status maps to its typed exception with the server's own message."""

from __future__ import annotations

import pytest
import structlog

from gex_alertd import redaction
from gex_alertd.sources.errors import (
    AuthError,
    BadRequest,
    MalformedPayload,
    PlanError,
    RateLimited,
    SourceError,
    TransientError,
    UnknownSymbol,
)
from tests.sources.conftest import API_KEY, ClientFactory
from tests.support.upstream import Reply, Upstream, flow_gex_body
from tests.support.wait import WAIT_S

CASES = [
    (400, {"error": "bad_request", "message": "Invalid expiry format 2026-13-45"}, BadRequest),
    (401, {"error": "unauthorized", "message": "Missing or invalid API key"}, AuthError),
    (404, {"error": "not_found", "message": "Symbol ZZZZ not found"}, UnknownSymbol),
    (500, {"error": "internal", "message": "Upstream node failure"}, TransientError),
    (502, {"message": "Bad gateway from edge"}, TransientError),
    (503, {"detail": "Service warming up"}, TransientError),
    (504, {"message": "Gateway timeout at edge"}, TransientError),
]


@pytest.mark.parametrize(("status", "body", "exc_type"), CASES)
async def test_status_maps_to_type_with_server_message(
    upstream: Upstream,
    make_client: ClientFactory,
    status: int,
    body: dict[str, str],
    exc_type: type[SourceError],
) -> None:
    upstream.push(Reply.json(body, status=status))
    client = make_client()
    with pytest.raises(exc_type) as info:
        await client.fetch("SPY")
    err = info.value
    assert type(err) is exc_type
    assert err.status == status
    assert err.symbol == "SPY"
    message = body.get("message") or body.get("detail")
    assert message is not None and message in str(err)
    assert f"HTTP {status}" in str(err)
    assert err.retryable is (status >= 500)


async def test_403_names_both_plans(upstream: Upstream, make_client: ClientFactory) -> None:
    upstream.push(
        Reply.json(
            {
                "error": "forbidden",
                "message": "Your plan does not include Flow GEX",
                "current_plan": "Basic",
                "required_plan": "Growth",
            },
            status=403,
        )
    )
    with pytest.raises(PlanError) as info:
        await make_client().fetch("SPY")
    err = info.value
    assert isinstance(err, AuthError)  # the poller treats 403 like 401
    assert (err.current_plan, err.required_plan) == ("Basic", "Growth")
    text = str(err)
    assert "Your plan does not include Flow GEX" in text
    assert "Basic" in text and "Growth" in text


async def test_403_without_plans_still_has_message(
    upstream: Upstream, make_client: ClientFactory
) -> None:
    upstream.push(Reply.json({"detail": "Alpha plan required"}, status=403))
    with pytest.raises(PlanError) as info:
        await make_client().fetch("SPY")
    assert info.value.current_plan is None
    assert "Alpha plan required" in str(info.value)


async def test_429_is_rate_limited_with_retry_after(
    upstream: Upstream, make_client: ClientFactory
) -> None:
    upstream.push(
        Reply.json({"message": "Rate limit exceeded"}, status=429, headers={"Retry-After": "0.3"})
    )
    with pytest.raises(RateLimited) as info:
        await make_client().fetch("SPY")
    assert info.value.retry_after == pytest.approx(0.3)
    assert "Rate limit exceeded" in str(info.value)


async def test_message_falls_back_detail_then_error_then_body(
    upstream: Upstream, make_client: ClientFactory
) -> None:
    client = make_client()
    upstream.push(
        Reply.json({"detail": "detail wins"}, status=400),
        Reply.json({"error": "only_error_code"}, status=400),
        Reply(
            400, b"<html><body>Bad   Request\n from proxy</body></html>", content_type="text/html"
        ),
        Reply(400, b""),
        Reply.json({"detail": [{"loc": ["query", "expiry"], "msg": "bad date"}]}, status=400),
    )
    messages = []
    for _ in range(5):
        with pytest.raises(BadRequest) as info:
            await client.fetch("SPY")
        messages.append(info.value.message)
    assert messages[0] == "detail wins"
    assert messages[1] == "only_error_code"
    assert messages[2] == "<html><body>Bad Request from proxy</body></html>"
    assert messages[3] == "(empty body)"
    assert "bad date" in messages[4] and "expiry" in messages[4]


async def test_huge_error_body_is_bounded(upstream: Upstream, make_client: ClientFactory) -> None:
    upstream.push(Reply(502, b"x" * 100_000, content_type="text/plain"))
    with pytest.raises(TransientError) as info:
        await make_client().fetch("SPY")
    assert len(info.value.message) <= 300
    assert info.value.message.endswith("...")


async def test_control_characters_of_an_error_body_never_reach_the_message(
    upstream: Upstream, make_client: ClientFactory
) -> None:
    # the message is printed by `check`, the console channel and alerts: a terminal escape or a
    # NUL from a hostile upstream must not travel with it (binary bodies, JSON messages alike)
    upstream.push(Reply(502, b"\x1f\x8b\x08\x00\x1b[2J\x00\x07gone\x7f\x9b", content_type="x/y"))
    upstream.push(
        Reply.json({"message": "bad \u001b]0;pwned\u0007 key \u0000 \u009b31m"}, status=500)
    )
    for _ in range(2):
        with pytest.raises(TransientError) as info:
            await make_client().fetch("SPY")
        message = info.value.message
        assert not any(ord(c) < 32 or 127 <= ord(c) < 160 for c in message), repr(message)
        assert "gone" in message or "pwned" in message


async def test_plan_names_of_a_403_are_bounded_and_clean(
    upstream: Upstream, make_client: ClientFactory
) -> None:
    # the plan names join the message: a hostile 403 made it as long as the body (16 MB)
    plan = "\u001b[2J" + "p" * 100_000
    upstream.push(
        Reply.json({"message": "no", "current_plan": plan, "required_plan": [plan]}, status=403)
    )
    with pytest.raises(PlanError) as info:
        await make_client().fetch("SPY")
    assert len(info.value.message) < 1000
    assert "\x1b" not in info.value.message
    assert info.value.current_plan is not None and info.value.current_plan.endswith("ppp...")


async def test_a_key_cut_by_the_message_bound_is_still_redacted(
    upstream: Upstream, make_client: ClientFactory
) -> None:
    # the bound cut the echoed key in two, and redaction, after the cut, missed the half kept
    upstream.push(Reply.json({"message": "x" * 270 + f" invalid key {API_KEY}"}, status=500))
    with pytest.raises(TransientError) as info:
        await make_client().fetch("SPY")
    assert API_KEY[:6] not in info.value.message, info.value.message


async def test_other_4xx_is_source_error_with_status(
    upstream: Upstream, make_client: ClientFactory
) -> None:
    upstream.push(Reply.json({"message": "Method not allowed here"}, status=405))
    upstream.push(Reply.json({"message": "Request timeout"}, status=408))
    client = make_client()
    with pytest.raises(SourceError) as info:
        await client.fetch("SPY")
    assert type(info.value) is SourceError
    assert info.value.status == 405 and not info.value.retryable
    assert "Method not allowed here" in str(info.value)
    with pytest.raises(TransientError):  # 408: the server timed us out, as transient as ours
        await client.fetch("SPY")


async def test_redirect_is_not_followed(upstream: Upstream, make_client: ClientFactory) -> None:
    upstream.push(Reply(302, b"", headers={"Location": "/elsewhere"}))
    with pytest.raises(SourceError) as info:
        await make_client().fetch("SPY")
    assert info.value.status == 302
    assert "/elsewhere" in str(info.value)
    assert [r.path for r in upstream.requests] == ["/v1/flow/gex/SPY"]


async def test_error_then_nothing_stored_in_repeat_state(
    upstream: Upstream, make_client: ClientFactory
) -> None:
    client = make_client()
    upstream.push(Reply.json({"message": "boom"}, status=500))
    with pytest.raises(TransientError):
        await client.fetch("SPY")
    first = await client.fetch("SPY")
    assert first.repeated is False


async def test_api_key_never_in_errors_or_logs(
    upstream: Upstream, make_client: ClientFactory
) -> None:
    # the last reply is the one that must time out; the others must not, however slow the
    # machine, so the short timeout is set right before it
    client = make_client(timeout_s=WAIT_S)
    upstream.push(
        # a careless server echoing the key back must not leak it either
        Reply.json({"message": f"invalid key {API_KEY}"}, status=401),
        Reply.json({"message": "no", "current_plan": API_KEY, "required_plan": "x"}, status=403),
        Reply(500, f"trace: key={API_KEY}".encode(), content_type="text/plain"),
        Reply.json({"message": "slow"}, status=429, headers={"Retry-After": "0"}),
        Reply.json(flow_gex_body(API_KEY)),  # symbol mismatch names the served symbol
        Reply(302, b"", headers={"Location": f"http://x/?k={API_KEY}"}),
        Reply(200, b"{}", delay_s=2),
    )
    errors: list[SourceError] = []
    with structlog.testing.capture_logs() as logs:
        for i in range(7):
            if i == 6:
                client.timeout_s = 0.2
            try:
                await client.fetch("SPY")
            except SourceError as exc:
                errors.append(exc)
    assert len(errors) == 7
    assert isinstance(errors[4], MalformedPayload)
    for err in errors:
        for text in (str(err), repr(err), err.message, repr(vars(err))):
            assert API_KEY not in text
        # no chained aiohttp/msgspec exception that could carry request headers into a traceback
        assert err.__cause__ is None
        assert err.__context__ is None or err.__suppress_context__
    assert logs, "the 429 is logged"
    assert API_KEY not in repr(logs)
    # the key did go to the server, in its header
    assert upstream.requests[0].headers["X-Api-Key"] == API_KEY


async def test_a_secret_disguised_by_a_control_character_is_still_redacted(
    upstream: Upstream, make_client: ClientFactory
) -> None:
    """An error's text is redacted once, after control characters become '?': a body echoing a
    secret URL with a control character where its '?' stands must not yield the URL."""
    secret = "https://hooks.example.com/w?sig=disguised-signature"
    redaction.register(secret)
    upstream.push(Reply(500, secret.replace("?", "\x07").encode(), content_type="text/plain"))
    client = make_client()
    with pytest.raises(TransientError) as info:
        await client.fetch("SPY")
    assert "disguised-signature" not in str(info.value)
    assert redaction.MASK in info.value.message
