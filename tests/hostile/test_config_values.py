"""Hostile config values (issue 17 items 6, 7, 9, 13): what `check` passed and `run` then failed
on, channel names that break the outbox's channel list, secrets echoed by errors, symbols
that make a path segment of their own, and `${...}` that is not what it looks like."""

from __future__ import annotations

import base64
import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from gex_alertd import config as config_mod
from gex_alertd import redaction
from gex_alertd.config import ConfigError
from gex_alertd.notify.webhook import WebhookChannel
from tests.hostile.support_config import check_offline

BASE: dict[str, Any] = {
    "source": {"kind": "simulator"},
    "watch": {"interval_s": 15, "symbols": ["SPY"]},
    "channels": {
        "tty": {"type": "console"},
        "ops": {"type": "webhook", "url": "https://example.com/hook"},
        "mail": {"type": "email", "host": "smtp.example.com", "from": "a@example.com",
                 "to": ["b@example.com"]},
    },
    "rules": [{"name": "r", "type": "flip_cross", "symbols": ["SPY"], "channels": ["tty"]}],
}  # fmt: skip


def with_value(dotted: str, value: Any) -> dict[str, Any]:
    tree = copy.deepcopy(BASE)
    *parents, last = dotted.split(".")
    node = tree
    for p in parents:
        node = node[int(p)] if isinstance(node, list) else node.setdefault(p, {})
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return tree


def problems_of(tree: dict[str, Any]) -> list[str]:
    try:
        config_mod.parse(tree)
    except ConfigError as exc:
        return exc.problems
    return []


def test_base_is_valid() -> None:
    assert problems_of(copy.deepcopy(BASE)) == []


# --- item 6: check refuses what run fails on ----------------------------------------------

NUMBER_PATHS = [
    "watch.interval_s",
    "watch.jitter_s",
    "source.timeout_s",
    "source.requests_per_min",
    "source.simulator.speed",
    "source.simulator.cache_s",
    "channels.ops.timeout_s",
    "channels.ops.rate_per_s",
    "channels.ops.retry_base_s",
    "outbox.claim_idle",
    "redis.retention",
    "rules.0.band_pct",
    "rules.0.cooldown",
]


@pytest.mark.parametrize("path", NUMBER_PATHS)
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_nan_and_inf_are_config_errors_everywhere(path: str, value: float) -> None:
    problems = problems_of(with_value(path, value))
    assert any(p.startswith(f"{path.replace('.0.', '[0].')}: expected a finite") for p in problems)


def test_nan_from_yaml_text_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        "watch: {interval_s: .nan, symbols: [SPY]}\nsource: {simulator: {speed: .inf}}\n"
    )
    code, out = check_offline(path)
    assert code == 2, out
    assert "watch.interval_s: expected a finite number" in out
    assert "source.simulator.speed: expected a finite number" in out


@pytest.mark.parametrize(
    "listen, message",
    [
        ("nonsense", "ops.listen: expected host:port"),
        ("nonsense:9108", "ops.listen: expected an IP address or localhost"),
        ("127.0.0.1:99999", "ops.listen: expected host:port"),
    ],
)
def test_bad_ops_listen_is_a_config_error(listen: str, message: str) -> None:
    assert any(p.startswith(message) for p in problems_of(with_value("ops.listen", listen)))


@pytest.mark.parametrize("listen", ["127.0.0.1:9108", "[::1]:9108", ":9108", "localhost:0"])
def test_good_ops_listen_passes(listen: str) -> None:
    assert problems_of(with_value("ops.listen", listen)) == []


@pytest.mark.parametrize("secret", ["not base64!", "whsec_***", "whsec_", "s"])
def test_webhook_secret_must_be_standard_webhooks_base64(secret: str) -> None:
    problems = problems_of(with_value("channels.ops.secret", secret))
    assert len(problems) == 1 and problems[0].startswith("channels.ops.secret: "), problems
    assert "Standard Webhooks" in problems[0] or "empty" in problems[0]


@pytest.mark.parametrize(
    "secret",
    [
        "whsec_" + base64.b64encode(b"k" * 24).decode(),
        base64.b64encode(b"k" * 32).decode(),  # the prefix is optional
        "whsec_" + base64.b64encode(b"k" * 25).decode().rstrip("="),  # unpadded
    ],
)
def test_valid_webhook_secrets_pass(secret: str) -> None:
    assert problems_of(with_value("channels.ops.secret", secret)) == []


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("host", "", "channels.mail.host: expected a host name"),
        ("host", "smtp example", "channels.mail.host: expected a host name"),
        ("port", 99999, "channels.mail.port: expected 1-65535"),
        ("port", 0, "channels.mail.port: expected 1-65535"),
        ("from", "@", "channels.mail.from: not an email address"),
        ("from", "a@", "channels.mail.from: not an email address"),
        ("to", ["@example.com"], "channels.mail.to[0]: not an email address"),
    ],
)
def test_bad_email_settings_are_config_errors(key: str, value: Any, message: str) -> None:
    problems = problems_of(with_value(f"channels.mail.{key}", value))
    assert any(p.startswith(message) for p in problems), problems


def test_named_email_address_passes() -> None:
    assert problems_of(with_value("channels.mail.from", "GEX desk <gex@example.com>")) == []


# --- item 7: channel names ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["tty,ops", "a b", "", "-x", "x" * 65, "é"])
def test_unsafe_channel_names_are_refused(name: str) -> None:
    tree = copy.deepcopy(BASE)
    tree["channels"][name] = {"type": "console"}
    problems = problems_of(tree)
    assert any(p.startswith(f"channels.{name}: a channel name is") for p in problems), problems


def test_usual_channel_names_pass() -> None:
    tree = copy.deepcopy(BASE)
    for name in ("desk-2", "ops.pager", "team_a", "X"):
        tree["channels"][name] = {"type": "console"}
    assert problems_of(tree) == []


# --- item 9: secrets --------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["source.api_key", "channels.ops.secret", "channels.mail.password", "channels.ops.url"],
)
def test_a_secret_of_the_wrong_type_is_never_echoed(path: str) -> None:
    secret = 987654321012
    problems = problems_of(with_value(path, secret))
    assert problems, "the wrong type must still be reported"
    assert all(str(secret) not in p for p in problems), problems
    wanted = f"{path}: expected a string, got a number (not shown"
    assert any(p.startswith(wanted) for p in problems), problems


def test_a_short_secret_of_the_wrong_type_is_not_echoed_either() -> None:
    problems = problems_of(with_value("channels.mail.password", ["x1", {"y": 77}]))
    assert all("x1" not in p and "77" not in p for p in problems), problems


def test_header_values_and_every_secret_scalar_are_registered() -> None:
    token = "Bearer hdr-" + "z" * 20
    tree = with_value("channels.ops.headers", {"Authorization": token, "X-Api": "123456789"})
    tree["source"]["api_key"] = 555666777888  # the wrong type: refused, and still a secret
    with pytest.raises(ConfigError, match=r"source\.api_key: expected a string"):
        config_mod.parse(tree)
    assert {token, "123456789", "555666777888"} <= redaction.registered()
    assert redaction.redact(f"echo: {token}") == "echo: ***"


def test_check_does_not_print_a_bare_number_secret(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        yaml.safe_dump(with_value("channels.ops.secret", 987654321012), sort_keys=False)
    )
    code, out = check_offline(path)
    assert code == 2 and "channels.ops.secret" in out, out
    assert "987654321012" not in out


# --- item 13: symbols and ${...} ---------------------------------------------------------


@pytest.mark.parametrize("symbol", [".", "..", "../x", "A/B", "-SPY", "SPY-", "A_B", "^", "S" * 17])
def test_symbols_outside_the_upstream_pattern_are_refused(symbol: str) -> None:
    problems = problems_of(with_value("watch.symbols", [symbol]))
    assert any(p.startswith("watch.symbols[0]: not a ticker symbol") for p in problems), problems


@pytest.mark.parametrize("symbol", ["SPY", "BRK.B", "BF-B", "^SPX", "spx", "A", "S" * 16])
def test_ticker_symbols_pass(symbol: str) -> None:
    assert problems_of(with_value("watch.symbols", [symbol])) == []


def test_nested_default_expands(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GEX_T_A", raising=False)
    monkeypatch.setenv("GEX_T_B", "inner")
    tree = with_value("channels.ops.url", "https://example.com/${GEX_T_A:-x${GEX_T_B}}/h")
    cfg = config_mod.parse(tree)
    ops = cfg.channels["ops"]
    assert isinstance(ops, WebhookChannel)
    assert ops.url == "https://example.com/xinner/h"
    monkeypatch.setenv("GEX_T_A", "outer")
    ops = config_mod.parse(copy.deepcopy(tree)).channels["ops"]
    assert isinstance(ops, WebhookChannel)
    assert ops.url == "https://example.com/outer/h"


def test_nested_default_reports_a_missing_inner_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GEX_T_A", raising=False)
    monkeypatch.delenv("GEX_T_B", raising=False)
    problems = problems_of(with_value("channels.ops.url", "https://x/${GEX_T_A:-x${GEX_T_B}}"))
    assert "channels.ops.url: ${GEX_T_B} is not set" in problems[0], problems


@pytest.mark.parametrize(
    "text, message",
    [
        ("https://x/${GEX_T_A:-x${GEX_T_B}", "unterminated ${GEX_T_A:-...}"),
        ("https://x/${1A}", "invalid ${...}"),
        ("https://x/${GEX_T_A", "invalid ${...}"),
        ("https://x/${GEX_T_A:?err}", "only :- (a default) is supported"),
    ],
)
def test_broken_references_are_refused_not_kept_literally(text: str, message: str) -> None:
    problems = problems_of(with_value("channels.ops.url", text))
    assert any(p.startswith("channels.ops.url: ") and message in p for p in problems), problems


async def test_an_echoed_header_never_reaches_notify_test_output(tmp_path: Path) -> None:
    """A receiver that echoes the request's headers in its error body (issue 17 item 9): the
    header's value is a secret, so the delivery error printed by notify-test is redacted."""
    import asyncio

    from aiohttp import web

    from tests.hostile.support_config import HANG_S
    from tests.reliability.support import GEX_ALERTD, clean_env

    token = "Bearer echo-" + "t" * 24

    async def echo(request: web.Request) -> web.Response:
        return web.Response(status=400, text=f"bad request, headers: {dict(request.headers)}")

    app = web.Application()
    app.router.add_post("/hook", echo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        path = tmp_path / "config.yaml"
        path.write_text(
            "channels:\n  ops:\n    type: webhook\n"
            f"    url: http://127.0.0.1:{port}/hook\n"
            f"    headers: {{Authorization: '{token}'}}\n"
        )
        proc = await asyncio.create_subprocess_exec(
            GEX_ALERTD, "notify-test", "--config", str(path), "--channel", "ops",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=clean_env(),
        )  # fmt: skip
        out, _ = await asyncio.wait_for(proc.communicate(), HANG_S)
    finally:
        await runner.cleanup()
    text = out.decode()
    assert proc.returncode != 0 and "400" in text, text  # the echo did come back
    assert "echo-ttt" not in text, text


@pytest.mark.parametrize(
    "path, url, message",
    [
        ("redis.url", "redis://127.0.0.1:99999/0", "redis.url: not a usable Redis URL: Port"),
        ("redis.url", "redis://[bad/0", "redis.url: not a usable Redis URL"),
        ("channels.ops.url", "https://example.com:99999/hook", "channels.ops.url: expected"),
        ("source.base_url", "http://127.0.0.1:port/", "source.base_url: expected"),
        ("source.base_url", "https://u:p@127.0.0.1/", "source.base_url: must not carry"),
    ],
)
def test_urls_the_client_cannot_use_are_config_errors(path: str, url: str, message: str) -> None:
    problems = problems_of(with_value(path, url))
    assert any(p.startswith(message) for p in problems), problems


@pytest.mark.parametrize("value", [0, 1025, 10**12])
def test_max_concurrency_is_bounded(value: int) -> None:
    """run starts twice this many poll workers at once: 10**12 of them never finish starting."""
    problems = problems_of(with_value("source.max_concurrency", value))
    assert any(p.startswith("source.max_concurrency: must be 1 to 1024") for p in problems)
