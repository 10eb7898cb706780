"""Config loading: every problem at once with its path, exit status 2, secrets from files."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gex_alertd import config, redaction
from gex_alertd.config import ConfigError
from gex_alertd.notify.webhook import WebhookChannel

ROOT = Path(__file__).resolve().parents[2]

BAD = textwrap.dedent(
    """
    source: {kind: flowgex, timeout_s: -1}
    watch:
      interval_s: 0.5
      symbols: [SPY, {symbol: SPX, expiry: 2026-05-15, interval_s: 0}, "bad sym!", SPY]
    channels:
      tty: {type: console}
      mail: {type: email, host: h, from: nobody, to: [c@d], bogus: 1}
      pager: {type: carrier-pigeon}
    rules:
      - {name: a, type: flip_cross, direction: sideways, channels: [tty, zz], cooldown: 10m}
      - {name: b, type: nope}
      - {name: a, type: flip_cross, cooldown: 3x}
    """
)

EXPECTED = [
    "source.api_key: required when kind is flowgex",
    "source.timeout_s: must be > 0",
    "watch.symbols[1].interval_s: must be > 0",
    "watch.symbols[2]: not a ticker symbol: 'bad sym!'",
    "watch.symbols[3]: duplicate watch entry SPY",
    "channels.mail.bogus: unknown key",
    "channels.mail.from: not an email address: 'nobody'",
    "channels.pager.type: expected one of alertmanager, console, discord, email, slack, teams, "
    "webhook, got 'carrier-pigeon'",
    "rules[0].direction: expected one of up, down, any, got 'sideways'",
    "rules[0].channels[1]: unknown channel 'zz'",
    "rules[1].type: expected one of",
    "rules[2].cooldown: expected a duration",
    "rules[2].name: duplicate rule name 'a'",
]


def test_every_problem_is_reported_with_its_path(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text(BAD)
    with pytest.raises(ConfigError) as err:
        config.load(p)
    text = "\n".join(err.value.problems)
    for fragment in EXPECTED:
        assert fragment in text, f"missing {fragment!r} in:\n{text}"


def test_check_exits_2_without_a_traceback(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text(BAD)
    proc = subprocess.run(
        [sys.executable, "-m", "gex_alertd", "check", "--offline", "--config", str(p)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    for fragment in EXPECTED:
        assert fragment in proc.stderr


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("source: [1, 2", "invalid YAML"),
        ("- just\n- a list", "top level: expected a mapping"),
        ("watch: {symbols: SPY}", "watch.symbols: expected a list"),
        ("redis: {url: http://nope}", "redis.url: expected redis://"),
    ],
)
def test_malformed_files(tmp_path, text, fragment):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as err:
        config.load(p)
    assert any(fragment in problem for problem in err.value.problems), err.value.problems


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        config.load(tmp_path / "nope.yaml")


def test_vars_from_environment_and_credentials_directory(tmp_path, monkeypatch):
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "WEBHOOK_SECRET").write_text("whsec_c2VjcmV0LWZyb20tZmlsZQ==\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    monkeypatch.setenv("FLASHALPHA_API_KEY", "fa-live-0123456789")
    p = tmp_path / "c.yaml"
    p.write_text(
        textwrap.dedent(
            """
            source: {kind: flowgex, api_key: "${FLASHALPHA_API_KEY}"}
            redis: {url: "${REDIS_URL:-redis://127.0.0.1:6379/1}"}
            watch: {symbols: [SPY]}
            channels:
              ops: {type: webhook, url: "https://hooks.example/x", secret: "${WEBHOOK_SECRET}"}
            """
        )
    )
    monkeypatch.delenv("REDIS_URL", raising=False)
    cfg = config.load(p)
    assert cfg.source.api_key == "fa-live-0123456789"
    assert cfg.redis.url == "redis://127.0.0.1:6379/1"
    ops = cfg.channels["ops"]
    assert isinstance(ops, WebhookChannel)
    assert ops.secret == "whsec_c2VjcmV0LWZyb20tZmlsZQ=="
    # every secret is known to the redaction registry
    line = redaction.redact("key fa-live-0123456789 and whsec_c2VjcmV0LWZyb20tZmlsZQ== leaked")
    assert "fa-live" not in line and "whsec_" not in line


def test_unset_variable_is_a_problem_with_its_path(tmp_path, monkeypatch):
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    p = tmp_path / "c.yaml"
    p.write_text('source: {kind: flowgex, api_key: "${NOT_SET_ANYWHERE}"}\n')
    with pytest.raises(ConfigError) as err:
        config.load(p)
    assert "source.api_key: ${NOT_SET_ANYWHERE} is not set" in "\n".join(err.value.problems)


def test_example_config_is_valid():
    cfg = config.load(ROOT / "config.example.yaml")
    assert [t.symbol for t in cfg.watch.entries()] == ["SPY", "QQQ", "IWM"]
    assert {type(r).__struct_config__.tag for r in cfg.rules} == {
        "flip_cross",
        "net_gex_sign",
        "oi_change",
        "wall_shift",
        "repositioning",
    }


def test_durations_and_watch_entries(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text(
        "watch: {interval_s: 0.25,"
        " symbols: [spy, {symbol: SPX, expiry: 2026-05-15, interval_s: 30}]}\n"
        "redis: {retention: 1h30m}\n"
    )
    cfg = config.load(p)
    assert cfg.redis.retention == 5400.0
    entries = cfg.watch.entries()
    assert entries[0].symbol == "SPY" and entries[0].interval_s == 0.25
    assert entries[1].expiry == "2026-05-15" and entries[1].interval_s == 30


def test_malformed_secret_url_is_a_config_problem_not_a_crash(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("channels: {ops: {type: webhook, url: 'http://user:pw@[bad-host/hook'}}\n")
    with pytest.raises(ConfigError) as err:
        config.load(p)
    assert any("channels.ops.url" in problem for problem in err.value.problems)
    assert "user:pw" not in str(err.value)


def test_premarket_without_the_nyse_calendar_is_a_problem(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("watch: {market_hours: always, premarket: true, symbols: [SPY]}\n")
    with pytest.raises(ConfigError) as err:
        config.load(p)
    assert any(x.startswith("watch.premarket: ") for x in err.value.problems), err.value.problems


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        (f"https://{'a' * 64}.example", "source.base_url: host name cannot be looked up"),
        ("https://lab.flashalpha.com/api?x=1", "source.base_url: must not carry a query"),
    ],
)
def test_a_base_url_the_client_cannot_use_is_a_problem(tmp_path, url, fragment):
    p = tmp_path / "c.yaml"
    p.write_text(f"source: {{kind: flowgex, api_key: k, base_url: '{url}'}}\n")
    with pytest.raises(ConfigError) as err:
        config.load(p)
    assert any(fragment in problem for problem in err.value.problems), err.value.problems


def test_path_is_no_yaml_key(tmp_path):
    """`path` is set by the loader (where the file is); written in a file it was taken silently
    and then overwritten: an unknown key like any other, and not offered as a known one."""
    p = tmp_path / "c.yaml"
    p.write_text("path: /etc/elsewhere.yaml\nsorce: {}\n")
    with pytest.raises(ConfigError) as err:
        config.load(p)
    problems = err.value.problems
    assert problems[0].startswith("path: unknown key (expected one of channels, heartbeat,")
    assert not any("path," in p or "path)" in p for p in problems), problems


def test_a_watch_entrys_jitter_must_not_be_negative(tmp_path):
    """A negative per-entry `jitter_s` was accepted (only the section's was checked)."""
    p = tmp_path / "c.yaml"
    p.write_text("watch:\n  symbols: [QQQ, {symbol: SPY, jitter_s: -3}]\n")
    with pytest.raises(ConfigError) as err:
        config.load(p)
    assert err.value.problems == ["watch.symbols[1].jitter_s: must be >= 0, got -3.0 (line 2)"]


def test_outbox_claim_idle_and_dedup_ttl_must_be_positive(tmp_path):
    """0 reclaimed every delivery in flight at once (each alert sent twice), or kept the sent
    marker 1 ms (a redelivery sent again); both were accepted."""
    p = tmp_path / "c.yaml"
    p.write_text("outbox: {claim_idle: 0, dedup_ttl: 0s, drain_timeout: 0}\n")
    with pytest.raises(ConfigError) as err:
        config.load(p)
    assert err.value.problems == [
        "outbox.claim_idle: must be > 0 (line 1)",
        "outbox.dedup_ttl: must be > 0 (line 1)",
    ]


def test_every_problem_names_its_line_in_the_config_or_rule_file(tmp_path):
    """A newcomer's editor jumps to `(line N)`: the key's own line, its section's for a missing
    key, and for a rule file the line in that file (which its path names). Red before: no
    problem of the typed config said where in the file it was."""
    (tmp_path / "rules.d").mkdir()
    (tmp_path / "rules.d" / "a.yaml").write_text(
        "# flip rules\n- name: a\n  type: flip_cross\n  direction: sideways\n  channels: [tty]\n"
    )
    p = tmp_path / "c.yaml"
    p.write_text(
        "source:\n"
        "  kind: simulator\n"
        "  timeot_s: 3\n"
        "watch:\n"
        "  symbols:\n"
        "    - SPY\n"
        "    - {symbol: QQQ, interval_s: -1}\n"
        "heartbeat: {every: 5m}\n"
        "channels:\n"
        "  tty: {type: console}\n"
        'rule_files: ["rules.d/*.yaml"]\n'
        "rules:\n"
        "  - name: b\n"
        "    type: net_gex_sign\n"
        "    channels: [tty, pager]\n"
    )
    with pytest.raises(ConfigError) as err:
        config.load(p)
    assert sorted(err.value.problems) == sorted(
        [
            "source.timeot_s: unknown key (expected one of api_key, backoff_base_s,"
            " backoff_max_s, base_url, kind, max_body_bytes, max_concurrency, max_future_s,"
            " requests_per_min, simulator, timeout_s) (line 3)",
            "watch.symbols[1].interval_s: must be > 0, got -1.0 (line 7)",
            "heartbeat.channel: missing required key (line 8)",
            "rules[0].channels[1]: unknown channel 'pager' (channels: tty) (line 15)",
            "rules.d/a.yaml[0].direction: expected one of up, down, any, got 'sideways' (line 4)",
        ]
    )


def test_a_value_of_the_wrong_type_is_named_in_yaml_words_with_the_value(tmp_path):
    """Red before: `watch.interval_s: expected float, got str` (msgspec's words, no value)."""
    p = tmp_path / "c.yaml"
    p.write_text("watch: {interval_s: fast, premarket: maybe, symbols: [SPY]}\n")
    with pytest.raises(ConfigError) as err:
        config.load(p)
    assert err.value.problems == [
        "watch.interval_s: expected a number, got 'fast' (line 1)",
        "watch.premarket: expected true or false, got 'maybe' (line 1)",
    ]
