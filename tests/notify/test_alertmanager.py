"""The Alertmanager channel against a real Alertmanager (Debian's prometheus-alertmanager on a
free loopback port): alerts read back from its API with their labels and annotations, a
resolved event ends the alert, a silence created in Alertmanager suppresses it; auth headers
and failures against a real aiohttp receiver."""

from __future__ import annotations

import asyncio
import base64
import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
import redis.asyncio as aioredis
from aiohttp import web

from gex_alertd import config as config_mod
from gex_alertd import redaction
from gex_alertd.model import AlertEvent
from gex_alertd.notify.alertmanager import (
    AlertmanagerChannel,
    AlertmanagerNotifier,
    alerts_url,
    payload,
)
from gex_alertd.notify.base import Ok, Permanent
from gex_alertd.notify.dispatch import Dispatcher
from tests.notify.support import Receiver, alert, enqueue, make_config
from tests.support import process
from tests.support.alertmanager import Alertmanager
from tests.support.wait import eventually

_rules = itertools.count()


@pytest.fixture(scope="session")
def alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Alertmanager]:
    yield from process.serving(lambda: Alertmanager(tmp_path_factory.mktemp("alertmanager")))


def _event(**kw: Any) -> AlertEvent:
    """An alert of a rule of its own: the session's Alertmanager is shared between tests."""
    rule = f"am-rule-{next(_rules)}"
    base = msgspec.structs.replace(alert(1), rule=rule, id=f"{rule}:SPY:1", expiry="2026-12-18")
    return msgspec.structs.replace(base, **kw)


def _iso(t: datetime) -> str:
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def _alerts(am: Alertmanager, rule: str) -> list[dict[str, Any]]:
    got = await asyncio.to_thread(am.api, "GET", "/alerts")
    return [a for a in got if a["labels"].get("rule") == rule]


async def test_alerts_arrive_through_the_outbox_with_labels_and_annotations(
    alertmanager: Alertmanager, redis: aioredis.Redis, redis_url: str
) -> None:
    channel = {"type": "alertmanager", "url": alertmanager.url,
               "external_url": "https://gex.example.net/"}  # fmt: skip
    cfg = make_config({"am": channel}, redis_url)
    d = Dispatcher(redis, cfg, consumer="t1")
    await d.start()
    event = _event()
    try:
        await enqueue(redis, event, ["am"])

        async def arrived() -> bool:
            return bool(await _alerts(alertmanager, event.rule))

        await eventually(arrived, "the alert in Alertmanager's /api/v2/alerts")
    finally:
        await d.stop()
    (got,) = await _alerts(alertmanager, event.rule)
    assert got["labels"] == {
        "alertname": event.rule, "rule": event.rule, "symbol": "SPY", "severity": "warning",
        "type": "flip_cross", "expiry": "2026-12-18",
    }  # fmt: skip
    assert got["annotations"]["summary"] == event.summary
    assert "spot: 513.10" in got["annotations"]["description"]
    assert got["annotations"]["alert_id"] == event.id
    assert got["startsAt"] == event.as_of
    assert got["generatorURL"] == "https://gex.example.net/view?symbol=SPY&expiry=2026-12-18"
    assert got["status"]["state"] == "active"


async def test_a_resolved_event_ends_the_alert(alertmanager: Alertmanager) -> None:
    notifier = AlertmanagerNotifier("am", _channel_for(alertmanager.url))
    # relative to the wall clock Alertmanager judges by: the end must be past (else it is
    # still active) and after the start (else the POST is refused), whatever today's date is
    now = datetime.now(UTC)
    firing = _event(as_of=_iso(now - timedelta(minutes=10)))
    resolved = msgspec.structs.replace(
        firing,
        id=firing.id + ":resolved",
        status="resolved",
        as_of=_iso(now - timedelta(minutes=1)),
    )
    try:
        assert isinstance(await notifier.send([firing]), Ok)
        assert [a["status"]["state"] for a in await _alerts(alertmanager, firing.rule)] == [
            "active"
        ]
        assert isinstance(await notifier.send([resolved]), Ok)
        # resolved (endsAt in the past): Alertmanager no longer lists it among the alerts
        assert await _alerts(alertmanager, firing.rule) == []
    finally:
        await notifier.aclose()


async def test_a_silence_created_in_alertmanager_is_honoured(alertmanager: Alertmanager) -> None:
    event = _event()
    silence = {
        "matchers": [{"name": "rule", "value": event.rule, "isRegex": False, "isEqual": True}],
        "startsAt": _iso(datetime.now(UTC) - timedelta(hours=1)),  # in force on any date
        "endsAt": "2099-01-01T00:00:00Z",
        "createdBy": "test",
        "comment": "desk maintenance",
    }
    created = await asyncio.to_thread(alertmanager.api, "POST", "/silences", silence)
    other = _event()
    notifier = AlertmanagerNotifier("am", _channel_for(alertmanager.url))
    try:
        assert isinstance(await notifier.send([event, other]), Ok)  # one POST, two alerts
    finally:
        await notifier.aclose()
    (got,) = await _alerts(alertmanager, event.rule)
    assert got["status"]["state"] == "suppressed"
    assert got["status"]["silencedBy"] == [created["silenceID"]]
    (unsilenced,) = await _alerts(alertmanager, other.rule)
    assert unsilenced["status"]["state"] == "active"


def test_payload_without_external_url_has_no_generator_url() -> None:
    (one,) = payload([alert(1)])
    assert "generatorURL" not in one
    assert "endsAt" not in one  # firing: Alertmanager's resolve_timeout ends it
    assert "expiry" not in one["labels"]
    assert alerts_url("http://am:9093/") == "http://am:9093/api/v2/alerts"
    assert alerts_url("http://am:9093/prefix") == "http://am:9093/prefix/api/v2/alerts"
    assert alerts_url("http://am:9093/api/v2/alerts") == "http://am:9093/api/v2/alerts"


async def test_bearer_and_basic_auth_and_refusals() -> None:
    async def refuse_second(n: int, _r: web.Request) -> web.Response | None:
        return web.Response(status=401, text="unauthorized") if n == 2 else None

    rx = await Receiver(path="/am/api/v2/alerts", responder=refuse_second).start()
    base = rx.url.removesuffix("/api/v2/alerts")
    bearer = AlertmanagerNotifier("am", _channel_for(base, bearer_token="tok-3f9a-secret-bearer"))
    basic = AlertmanagerNotifier(
        "am2", _channel_for(base, basic_auth={"username": "gex", "password": "pw-7c1e-secret"})
    )
    try:
        assert isinstance(await bearer.send([alert(1)]), Ok)
        assert rx.hits[0].headers["Authorization"] == "Bearer tok-3f9a-secret-bearer"
        body = msgspec.json.decode(rx.hits[0].body)
        assert isinstance(body, list) and body[0]["labels"]["rule"] == "spy-flip"
        outcome = await basic.send([alert(2)])
        assert isinstance(outcome, Permanent) and "401" in outcome.reason
        pair = base64.b64encode(b"gex:pw-7c1e-secret").decode()
        assert rx.hits[1].headers["Authorization"] == f"Basic {pair}"
        for secret in ("tok-3f9a-secret-bearer", "pw-7c1e-secret", pair):
            assert secret not in redaction.redact(f"error with {secret}")
    finally:
        await bearer.aclose()
        await basic.aclose()
        await rx.stop()


def _channel_for(url: str, **extra: Any) -> AlertmanagerChannel:
    cfg = make_config({"am": {"type": "alertmanager", "url": url, **extra}}, "redis://x")
    ch = cfg.channels["am"]
    assert isinstance(ch, AlertmanagerChannel)
    return ch


def test_config_problems_name_the_key() -> None:
    bad = {
        "type": "alertmanager",
        "url": "am:9093",
        "bearer_token": "t",
        "basic_auth": {"username": "u", "password": "p"},
        "external_url": "gex",
    }
    with pytest.raises(config_mod.ConfigError) as err:
        make_config({"am": bad}, "redis://x")
    text = "\n".join(err.value.problems)
    assert "channels.am.url: expected an http(s) URL" in text
    assert "channels.am.bearer_token: choose one of basic_auth and bearer_token" in text
    assert "channels.am.external_url: expected an http(s) URL" in text
    # a token with a line break (a YAML block scalar) would fail every send, not shown
    with pytest.raises(config_mod.ConfigError) as err:
        make_config(
            {"am": {"type": "alertmanager", "url": "http://am:9093", "bearer_token": "t0k3n\n"}},
            "redis://x",
        )
    assert any(p.startswith("channels.am.bearer_token:") for p in err.value.problems)
    assert "t0k3n" not in str(err.value)
