"""The HTTP delivery path against real receivers: redirects are never followed (defect 1),
Retry-After values from outside are bounded (defect 2)."""

from __future__ import annotations

import asyncio
import math

import redis.asyncio as aioredis
from aiohttp import web

from gex_alertd import keys, redaction
from gex_alertd.notify.base import Ok, Permanent, Retry
from gex_alertd.notify.dispatch import Dispatcher
from gex_alertd.notify.outbox import list_dead
from gex_alertd.notify.webhook import WebhookChannel, WebhookNotifier
from tests.notify.support import SECRET, Receiver, alert, enqueue, make_config
from tests.support.wait import eventually


def redirect_to(location: str, status: int = 302) -> object:
    async def respond(_n: int, _r: web.Request) -> web.Response:
        return web.Response(status=status, headers={"Location": location})

    return respond


async def test_a_redirect_is_a_failure_naming_the_location_and_is_never_followed() -> None:
    target = await Receiver().start()
    for status in (301, 302, 303, 307, 308):
        rx = await Receiver(responder=redirect_to(target.url, status)).start()  # type: ignore[arg-type]  # a Responder
        cfg = WebhookChannel(url=rx.url, secret=SECRET, headers={"Authorization": "Bearer t0k"})
        n = WebhookNotifier("ops", cfg)
        try:
            outcome = await n.send([alert(1)])
            assert outcome == Permanent(
                f"HTTP {status} redirect to {target.url}; deliveries never follow redirects"
            )
            assert len(rx.hits) == 1 and rx.hits[0].method == "POST"
        finally:
            await n.aclose()
            await rx.stop()
    assert target.hits == []  # neither a GET nor a POST, and the auth header went nowhere
    await target.stop()


async def test_a_redirect_location_with_secrets_is_redacted() -> None:
    redaction.register("s3cr3tpathpart")
    where = "http://user:pw@127.0.0.1:9/hooks/s3cr3tpathpart?token=abc"
    rx = await Receiver(responder=redirect_to(where)).start()  # type: ignore[arg-type]  # a Responder
    n = WebhookNotifier("ops", WebhookChannel(url=rx.url))
    try:
        outcome = await n.send([alert(1)])
        assert isinstance(outcome, Permanent)
        assert "pw" not in outcome.reason and "abc" not in outcome.reason
        assert "s3cr3tpathpart" not in outcome.reason
        assert "redirect to http://127.0.0.1:9/hooks/***?…" in outcome.reason
    finally:
        await n.aclose()
        await rx.stop()


async def test_on_redirect_retry_makes_a_redirect_transient() -> None:
    rx = await Receiver(responder=redirect_to("http://127.0.0.1:9/x")).start()  # type: ignore[arg-type]  # a Responder
    n = WebhookNotifier("ops", WebhookChannel(url=rx.url, on_redirect="retry"))
    try:
        outcome = await n.send([alert(1)])
        assert isinstance(outcome, Retry) and "redirect to http://127.0.0.1:9/x" in outcome.reason
    finally:
        await n.aclose()
        await rx.stop()


async def test_a_redirected_alert_is_dead_lettered_not_counted_as_delivered(
    redis: aioredis.Redis, redis_url: str
) -> None:
    target = await Receiver().start()
    rx = await Receiver(responder=redirect_to(target.url)).start()  # type: ignore[arg-type]  # a Responder
    cfg = make_config({"ops": {"type": "webhook", "url": rx.url}}, redis_url)
    d = Dispatcher(redis, cfg, consumer="t1")
    await d.start()
    try:
        await enqueue(redis, alert(1), ["ops"])

        async def dead() -> bool:
            return await redis.xlen(keys.DEAD) == 1

        await eventually(dead, "the redirected alert dead-lettered")
        [letter] = await list_dead(redis)
        assert letter.reason.startswith(f"HTTP 302 redirect to {target.url}")
        assert not await redis.exists(keys.sent_marker("SPY", alert(1).id, "ops"))
        assert target.hits == [] and d.workers["ops"].sent == 0
    finally:
        await d.stop()
        await rx.stop()
        await target.stop()


async def test_retry_after_nan_does_not_stall_the_channel(
    redis: aioredis.Redis, redis_url: str
) -> None:
    async def nan_then_ok(n: int, _r: web.Request) -> web.Response | None:
        if n == 1:
            return web.Response(status=503, headers={"Retry-After": "nan"})
        if n == 2:
            return web.Response(status=429, headers={"Retry-After": "inf"})
        return None

    rx = await Receiver(responder=nan_then_ok).start()
    hook = {"type": "webhook", "url": rx.url, "retry_base_s": 0.05, "retry_max_s": 0.1}
    cfg = make_config({"ops": hook}, redis_url)
    d = Dispatcher(redis, cfg, consumer="t1")
    await d.start()
    try:
        await enqueue(redis, alert(1), ["ops"])
        await rx.wait_for(1)  # before the fix the channel's retry_at was NaN: never due
        assert [h.status for h in rx.hits] == [503, 429, 200]
        assert math.isfinite(d.workers["ops"].retry_at)
    finally:
        await d.stop()
        await rx.stop()


async def test_retry_after_answers_are_finite_and_bounded() -> None:
    answers = iter(["nan", "-5", "99999999", "Wed, 21 Oct 2015 07:28:00 GMT", "2.5"])

    async def respond(_n: int, _r: web.Request) -> web.Response:
        return web.Response(status=503, headers={"Retry-After": next(answers)})

    rx = await Receiver(responder=respond).start()
    n = WebhookNotifier("ops", WebhookChannel(url=rx.url))
    try:
        got = [await n.send([alert(1)]) for _ in range(5)]
        assert [o.after for o in got if isinstance(o, Retry)] == [None, 0.0, 3600.0, 0.0, 2.5]
        assert not any(isinstance(o, Ok) for o in got)
    finally:
        await n.aclose()
        await rx.stop()


async def test_a_malformed_answer_never_puts_the_webhook_urls_token_in_the_reason() -> None:
    # aiohttp's ClientResponseError quotes the URL as yarl spells it (`%7e` as `~`, `:80`
    # dropped, `HTTP` lower-cased, a space as `+`): the config's spelling, the one registered
    # for redaction, no longer matched, and the token went into the log line and dead letter
    answer = [b""]

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer[0])
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    urls = [
        f"http://127.0.0.1:{port}/hook?token=tok%7eMALFORMEDSECRET1",
        f"HTTP://127.0.0.1:{port}/hook?token=MALFORMEDSECRET2",
        f"http://127.0.0.1:{port}/a/../hook?token=MALFORMEDSECRET3",
    ]
    try:
        for url in urls:
            for answer[0] in (b"HTTP/1.1 999999 X\r\n\r\n", b"garbage\r\n\r\n"):
                n = WebhookNotifier("ops", WebhookChannel(url=url))
                try:
                    outcome = await n.send([alert(1)])
                finally:
                    await n.aclose()
                assert isinstance(outcome, Retry), outcome
                assert "MALFORMEDSECRET" not in outcome.reason, outcome.reason
                assert "status line" in outcome.reason, outcome.reason  # the cause, one line
                assert "\n" not in outcome.reason
    finally:
        server.close()
        await server.wait_closed()


async def test_a_2xx_whose_body_never_ends_is_delivered_not_retried() -> None:
    # the answer's body was read (for a snippet) whatever the status: a receiver that said 200
    # and then stalled its body ran into the timeout, a Retry, so the alert it had taken was
    # sent again and again, and dead-lettered as failed at the end of the retry budget
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{")
        await writer.drain()
        await reader.read()  # holds the rest of the body until the client goes

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    n = WebhookNotifier("ops", WebhookChannel(url=f"http://127.0.0.1:{port}/hook", timeout_s=2))
    try:
        assert await n.send([alert(1)]) == Ok("HTTP 200")
    finally:
        await n.aclose()
        server.close()
        await server.wait_closed()
