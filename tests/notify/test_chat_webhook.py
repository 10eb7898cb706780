"""The path Slack, Discord and Teams share (notify/chat_webhook.py), against a real receiver:
each POSTs its own renderer's JSON with its own content type, keys its send budget as its
receiver limits, names its probe target and registers the webhook URL as a secret."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import msgspec
import pytest

from gex_alertd import redaction
from gex_alertd.model import AlertEvent
from gex_alertd.notify.chat_webhook import ChatChannel, ChatNotifier
from gex_alertd.notify.discord import DiscordChannel, DiscordNotifier, discord_payload
from gex_alertd.notify.slack import SlackChannel, SlackNotifier, slack_payload
from gex_alertd.notify.teams import TeamsChannel, TeamsNotifier, teams_payload
from tests.notify.support import Receiver, alert

Payload = Callable[[Sequence[AlertEvent]], dict[str, Any]]
CHATS: list[tuple[type[ChatChannel], type[ChatNotifier[Any]], Payload, str]] = [
    (SlackChannel, SlackNotifier, slack_payload, "application/json; charset=utf-8"),
    (DiscordChannel, DiscordNotifier, discord_payload, "application/json"),
    (TeamsChannel, TeamsNotifier, teams_payload, "application/json"),
]


@pytest.mark.parametrize(("channel", "notifier", "payload", "ctype"), CHATS)
async def test_posts_the_channels_own_json(
    channel: type[ChatChannel],
    notifier: type[ChatNotifier[Any]],
    payload: Payload,
    ctype: str,
) -> None:
    rx = await Receiver().start()
    n = notifier("desk", channel(webhook_url=rx.url))
    try:
        for alerts in ([alert(1)], [alert(2), alert(3, "QQQ", "critical")]):
            await n.send(alerts)
            hit = rx.hits[-1]
            assert hit.body == msgspec.json.encode(payload(alerts))
            assert hit.headers["Content-Type"] == ctype
        assert n.probe_target() == ("127.0.0.1", rx.port)
    finally:
        await n.aclose()
        await rx.stop()


def test_budget_per_url_where_the_receiver_limits_per_url() -> None:
    url = "https://hooks.example.com/services/T0/B0/abcdefgh"
    slack = [SlackNotifier(name, SlackChannel(webhook_url=url)) for name in ("a", "b")]
    assert [s.rate_key for s in slack] == [f"slack:{url}"] * 2
    discord = [DiscordNotifier(name, DiscordChannel(webhook_url=url)) for name in ("a", "b")]
    assert [d.rate_key for d in discord] == [f"discord:{url}"] * 2
    teams = [TeamsNotifier(name, TeamsChannel(webhook_url=url)) for name in ("a", "b")]
    assert [t.rate_key for t in teams] == ["channel:a", "channel:b"]


@pytest.mark.parametrize(("channel", "notifier", "payload", "ctype"), CHATS)
def test_the_webhook_url_is_a_secret_from_the_start(
    channel: type[ChatChannel],
    notifier: type[ChatNotifier[Any]],
    payload: Payload,
    ctype: str,
) -> None:
    url = f"https://hooks.example.com/hook/token-of-{channel.__name__}?sig=sig-of-{ctype}"
    notifier("desk", channel(webhook_url=url))
    shown = redaction.redact(f"POST {url} failed")
    assert f"token-of-{channel.__name__}" not in shown and "***" in shown
