"""Data-health config: the operator rules' fields and `heartbeat`, every problem with its path,
through `gex-alertd check` as an operator runs it."""

from __future__ import annotations

import textwrap

from gex_alertd import config
from gex_alertd.rules.source_failing import SourceFailing
from gex_alertd.rules.stale_data import StaleData
from tests.hostile.support_config import assert_check_refuses

BAD = textwrap.dedent(
    """
    channels: {ops: {type: console}}
    rules:
      - {name: s, type: stale_data, max_age: 0, feeds: {flow_fed: 5m}, channels: [ops]}
      - {name: f, type: source_failing, for: later, channels: [pager]}
      - {name: t, type: stale_data, feeds: {oi_feed: soon}, missing: maybe}
    heartbeat: {channel: nowhere, every: 0.5s, bogus: 1}
    """
)

EXPECTED = [
    "rules[0].max_age: must be > 0",
    "rules[0].feeds.flow_fed: unknown feed (known: as_of, node, equity_feed",
    "rules[2].feeds.oi_feed: expected a duration",
    "rules[2].missing: expected one of ignore, stale, got 'maybe'",
    "rules[1].for: expected a duration",
    "rules[1].channels[0]: unknown channel 'pager'",
    "heartbeat.channel: unknown channel 'nowhere' (channels: ops)",
    "heartbeat.every: must be at least 1s, got 0.5s",
    "heartbeat.bogus: unknown key",
]


def test_check_names_every_problem_with_its_path(tmp_path):
    assert_check_refuses(tmp_path, BAD, EXPECTED)


def test_a_good_config_parses(tmp_path):
    cfg = config.parse(
        {
            "channels": {"ops": {"type": "console"}, "dms": {"type": "console"}},
            "rules": [
                {"name": "s", "type": "stale_data", "max_age": "2m",
                 "feeds": {"oi_feed": "20h", "macro_feed": 0}, "channels": ["ops"]},
                {"name": "f", "type": "source_failing", "for": "5m"},
            ],
            "heartbeat": {"channel": "dms", "every": "15m"},
        }
    )  # fmt: skip
    stale, failing = cfg.rules
    assert isinstance(stale, StaleData) and stale.limit("oi_feed") == 20 * 3600
    assert stale.limit("flow_feed") == 120 and stale.limit("macro_feed") == 0
    assert isinstance(failing, SourceFailing) and failing.for_ == 300
    assert failing.severity == "critical"
    assert cfg.heartbeat is not None and cfg.heartbeat.every == 900
    assert cfg.heartbeat.severity == "info"


def test_the_readme_snippet_parses():
    import re
    from pathlib import Path

    import yaml

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    (block,) = [b for b in re.findall(r"```yaml\n(.*?)```", readme, re.S) if "stale_data" in b]
    cfg = config.parse(yaml.safe_load(block))
    assert [r.type_name for r in cfg.rules] == ["stale_data", "source_failing"]
    assert cfg.heartbeat is not None and cfg.heartbeat.channel == "ops"
