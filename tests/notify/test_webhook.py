from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest
from aiohttp import web

from gex_alertd import redaction
from gex_alertd.model import decode_alert
from gex_alertd.notify.base import Ok, Permanent, Retry
from gex_alertd.notify.webhook import WebhookChannel, WebhookNotifier
from tests.notify.support import SECRET, Receiver, alert
from tests.support.redis_server import free_port


def channel(url: str, **kw: Any) -> WebhookChannel:
    return WebhookChannel(url=url, **kw)


async def test_signed_delivery_verifies_with_the_standardwebhooks_verifier() -> None:
    rx = await Receiver(secret=SECRET).start()
    n = WebhookNotifier("ops", channel(rx.url, secret=SECRET, headers={"X-Team": "desk"}))
    try:
        a = alert(1)
        assert isinstance(await n.send([a]), Ok)
        hit = rx.hits[0]
        assert hit.verified is True
        assert hit.headers["webhook-id"] == a.id
        assert hit.headers["X-Team"] == "desk"
        assert hit.headers["Content-Type"] == "application/json"
        assert decode_alert(hit.body) == a
    finally:
        await n.aclose()
        await rx.stop()


async def test_wrong_secret_fails_verification() -> None:
    rx = await Receiver(secret=SECRET).start()
    other = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"
    n = WebhookNotifier("ops", channel(rx.url, secret=other))
    try:
        await n.send([alert(1)])
        assert rx.hits[0].verified is False
    finally:
        await n.aclose()
        await rx.stop()


async def test_custom_headers_cannot_forge_the_signature() -> None:
    rx = await Receiver(secret=SECRET).start()
    n = WebhookNotifier(
        "ops", channel(rx.url, secret=SECRET, headers={"webhook-signature": "v1,forged"})
    )
    try:
        await n.send([alert(1)])
        assert rx.hits[0].verified is True
    finally:
        await n.aclose()
        await rx.stop()


async def test_status_mapping_retry_after_and_permanent() -> None:
    answers = {
        1: web.Response(status=503, text="busy"),
        2: web.Response(status=429, headers={"Retry-After": "7"}),
        3: web.Response(status=408),
        4: web.Response(status=404, text="no such hook"),
        5: web.Response(status=204),
    }

    async def responder(n: int, _req: web.Request) -> web.Response:
        return answers[n]

    rx = await Receiver(responder=responder).start()
    n = WebhookNotifier("ops", channel(rx.url))
    try:
        out = [await n.send([alert(i)]) for i in range(5)]
        assert isinstance(out[0], Retry) and "503" in out[0].reason and "busy" in out[0].reason
        assert out[1] == Retry("HTTP 429", 7.0, throttled=True)
        assert isinstance(out[2], Retry)
        assert isinstance(out[3], Permanent) and "404" in out[3].reason
        assert isinstance(out[4], Ok)
    finally:
        await n.aclose()
        await rx.stop()


async def test_timeout_is_a_retry() -> None:
    async def slow(_n: int, _req: web.Request) -> None:
        await asyncio.sleep(1.0)

    rx = await Receiver(responder=slow).start()
    n = WebhookNotifier("ops", channel(rx.url, timeout_s=0.2))
    try:
        out = await n.send([alert(1)])
        assert isinstance(out, Retry) and "timeout" in out.reason
    finally:
        await n.aclose()
        await rx.stop()


async def test_connection_error_reason_never_shows_the_secret_url() -> None:
    url = f"http://user:pa55word@127.0.0.1:{free_port()}/hooks/T000/B000/XXXXsecretXXXX"
    n = WebhookNotifier("ops", channel(url))
    try:
        out = await n.send([alert(1)])
        assert isinstance(out, Retry)
        assert "XXXXsecretXXXX" not in out.reason and "pa55word" not in out.reason
        assert url in redaction.registered() or "pa55word" in redaction.registered()
    finally:
        await n.aclose()


async def test_malformed_secret_is_a_permanent_failure_not_a_crash() -> None:
    n = WebhookNotifier("ops", channel("http://127.0.0.1:9/x", secret="whsec_"))
    out = await n.send([alert(1)])
    assert isinstance(out, Permanent) and "secret" in out.reason
    assert msgspec.json.encode(out)  # outcomes are plain structs


NEW_SECRET = "whsec_" + "bmV3LXNpZ25pbmcta2V5LWZvci1yb3RhdGlvbg=="


async def test_rotation_signs_with_every_secret_and_either_verifies() -> None:
    """`secrets: [new, old]`: one webhook-signature header with both signatures,
    space-separated, so a receiver still on the old secret and one already on the new both
    accept the message (Standard Webhooks)."""
    old_rx, new_rx = (
        await Receiver(secret=SECRET).start(),
        await Receiver(secret=NEW_SECRET).start(),
    )
    try:
        for rx in (old_rx, new_rx):
            n = WebhookNotifier("ops", channel(rx.url, secrets=[NEW_SECRET, SECRET]))
            try:
                assert isinstance(await n.send([alert(1)]), Ok)
            finally:
                await n.aclose()
        for rx in (old_rx, new_rx):
            hit = rx.hits[0]
            assert hit.verified is True
            sigs = hit.headers["webhook-signature"].split(" ")
            assert len(sigs) == 2 and all(s.startswith("v1,") for s in sigs)
    finally:
        await old_rx.stop()
        await new_rx.stop()


async def test_a_receiver_with_a_third_secret_rejects_a_rotated_message() -> None:
    third = "whsec_" + "dGhpcmQtc2VjcmV0LW5vdC1jb25maWd1cmVk"
    rx = await Receiver(secret=third).start()
    n = WebhookNotifier("ops", channel(rx.url, secrets=[NEW_SECRET, SECRET]))
    try:
        await n.send([alert(1)])
        assert rx.hits[0].verified is False
    finally:
        await n.aclose()
        await rx.stop()


def test_secret_and_secrets_are_checked_without_echoing_them() -> None:
    from gex_alertd import config as config_mod

    hook = {"type": "webhook", "url": "http://127.0.0.1:9/h"}
    both = {**hook, "secret": SECRET, "secrets": [NEW_SECRET]}
    bad = {**hook, "secrets": [NEW_SECRET, "not base64 !!"]}
    for ch, expected in (
        (both, "channels.ops.secrets: give either secret or secrets, not both"),
        (bad, "channels.ops.secrets[1]: not a Standard Webhooks secret"),
    ):
        try:
            config_mod.parse({"channels": {"ops": ch}})
        except config_mod.ConfigError as exc:
            assert any(p.startswith(expected) for p in exc.problems), exc.problems
            assert "not base64 !!" not in str(exc)
        else:
            raise AssertionError(f"accepted {ch}")
    # `secret:` alone keeps working
    cfg = config_mod.parse({"channels": {"ops": {**hook, "secret": SECRET}}})
    assert cfg.channels["ops"].signing_secrets() == [SECRET]  # type: ignore[attr-defined]  # a WebhookChannel


def test_headers_that_no_request_can_carry_are_config_problems_never_echoed() -> None:
    # a YAML block scalar (`Authorization: |`) ends its value with a newline: aiohttp refuses
    # it on every send (ValueError, "notifier raised", each alert retried to a dead letter)
    # while `check` said ok; a name that is no token made every receiver answer 400
    from gex_alertd import config as config_mod

    hook = {"type": "webhook", "url": "http://127.0.0.1:9/h"}
    for headers, expected in (
        ({"Authorization": "Bearer s3kr1t-v4lue\n"}, "channels.ops.headers.Authorization:"),
        ({"X-Token": "s3kr1t-v4lue\x00"}, "channels.ops.headers.X-Token:"),
        ({"X Token": "s3kr1t-v4lue"}, "channels.ops.headers.X Token: not a valid header name"),
    ):
        with pytest.raises(config_mod.ConfigError) as err:
            config_mod.parse({"channels": {"ops": {**hook, "headers": headers}}})
        assert any(p.startswith(expected) for p in err.value.problems), err.value.problems
        assert "s3kr1t-v4lue" not in str(err.value)
    # a tab, Latin-1 or any other text still goes as it did
    ok = {"X-A": "a\tb", "X-B": "caf\u00e9 \u20ac"}
    cfg = config_mod.parse({"channels": {"ops": {**hook, "headers": ok}}})
    assert cfg.channels["ops"].headers == ok  # type: ignore[attr-defined]  # a WebhookChannel
