"""`gex-alertd check` warnings and `--strict` (issue 16 item 5, the check side) and exit
statuses (issue 16 item 6): 2 stays "bad config" (systemd's RestartPreventExitStatus=2),
a usage error is 64 (EX_USAGE)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.hostile.support_config import check_offline, gex_alertd

VALID = """
watch: {symbols: [SPY]}
channels:
  tty: {type: console}
  pager: {type: console, min_severity: critical}
rules:
"""


def write(tmp_path: Path, rules: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(VALID + rules)
    return path


def test_a_rule_for_an_unwatched_symbol_warns(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "  - {name: qqq-flip, type: flip_cross, symbols: [SPY, QQQ, iwm], channels: [tty]}\n",
    )
    code, out = check_offline(path)
    assert code == 0, out
    assert "1 warning(s)" in out
    assert "warning: rule 'qqq-flip': QQQ, iwm not in watch.symbols" in out, out


@pytest.mark.parametrize(
    "rule, reason",
    [
        ("{name: lost, type: flip_cross, symbols: [SPY]}", "no channels"),
        (
            "{name: lost, type: flip_cross, symbols: [SPY], severity: warning, channels: [pager]}",
            "severity warning is below the min_severity of every channel it routes to (pager)",
        ),
    ],
    ids=["no-channels", "filtered-out"],
)
def test_a_rule_that_reaches_no_channel_warns(tmp_path: Path, rule: str, reason: str) -> None:
    path = write(tmp_path, f"  - {rule}\n")
    code, out = check_offline(path)
    assert code == 0, out
    assert f"warning: rule 'lost': {reason}" in out, out


def test_a_follow_up_with_outcomes_off_warns(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "  - {name: f, type: flip_cross, symbols: [SPY], channels: [tty], follow_up: [30m]}\n"
        "outcomes: {enabled: false}\n",
    )
    code, out = check_offline(path)
    assert code == 0, out
    assert "warning: rule 'f': follow_up is set but outcomes.enabled is false" in out, out


def test_strict_makes_warnings_errors(tmp_path: Path) -> None:
    path = write(tmp_path, "  - {name: lost, type: flip_cross, symbols: [QQQ]}\n")
    proc = gex_alertd("check", "--offline", "--strict", "--config", str(path))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert f"invalid config {path}" in out
    assert "rule 'lost': QQQ not in watch.symbols" in out and "(--strict)" in out
    assert "rule 'lost': no channels" in out


def test_a_clean_config_has_no_warnings_even_strict(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "  - {name: ok, type: flip_cross, symbols: [spy], channels: [tty, pager]}\n"
        "  - {name: all, type: flip_cross, symbols: '*', severity: critical, channels: [pager]}\n",
    )
    proc = gex_alertd("check", "--offline", "--strict", "--config", str(path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "warning" not in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["--no-such-option"],
        ["no-such-command"],
        ["check", "--no-such-option"],
        ["tail", "--config", "/dev/null", "--last", "many"],
        ["replay", "--config", "{config}", "--from", "yesterday-ish"],
        ["silence", "--bogus"],
    ],
)
def test_usage_errors_exit_64(tmp_path: Path, args: list[str]) -> None:
    config = write(tmp_path, "  []\n")
    proc = gex_alertd(*[a.replace("{config}", str(config)) for a in args])
    assert proc.returncode == 64, proc.stdout + proc.stderr
    assert "Usage:" in proc.stderr or "Error:" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_bad_config_stays_2_and_help_is_0(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("watch: {interval_s: -1}\n")
    assert gex_alertd("check", "--offline", "--config", str(bad)).returncode == 2
    assert gex_alertd("check", "--help").returncode == 0
    assert gex_alertd("--version").returncode == 0
