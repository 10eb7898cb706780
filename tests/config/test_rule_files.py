"""`rule_files:`: globs relative to the config file, each file a list of rules, every problem
named with its file and its path inside the file."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gex_alertd import config
from gex_alertd.config import ConfigError

ROOT = Path(__file__).resolve().parents[2]

CONFIG = """
channels: {tty: {type: console}, ops: {type: console}}
rule_files: ["rules.d/*.yaml"]
rules:
  - {name: inline, type: flip_cross, channels: [tty]}
"""


def write(base: Path, files: dict[str, str], cfg: str = CONFIG) -> Path:
    for name, text in files.items():
        p = base / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text))
    path = base / "etc" / "config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(cfg)
    return path


def problems_of(path: Path) -> str:
    with pytest.raises(ConfigError) as err:
        config.load(path)
    return "\n".join(err.value.problems)


def test_rules_come_from_the_files_next_to_the_config(tmp_path, monkeypatch):
    path = write(
        tmp_path,
        {
            "etc/rules.d/b-sign.yaml": """
                - {name: sign, type: net_gex_sign, channels: [ops], confirm: 2}
            """,
            "etc/rules.d/a-flip.yaml": """
                - {name: flip-up, type: flip_cross, direction: up, channels: [tty]}
                - {name: flip-down, type: flip_cross, direction: down, channels: [tty]}
            """,
            "etc/rules.d/notes.txt": "not yaml, not matched",
            "etc/rules.d/empty.yaml": "# nothing here yet\n",
        },
    )
    monkeypatch.chdir(tmp_path)  # relative to the config file, not to the working directory
    cfg = config.load(path)
    # inline rules first, then the files in sorted order, each file in its own order
    assert [r.name for r in cfg.rules] == ["inline", "flip-up", "flip-down", "sign"]
    assert cfg.rules[1].direction == "up" and cfg.rules[3].confirm == 2
    assert cfg.rule_files == ["rules.d/*.yaml"]


def test_every_problem_names_its_file_and_path(tmp_path):
    path = write(
        tmp_path,
        {
            "etc/rules.d/a.yaml": """
                - {name: dup, type: flip_cross, channels: [tty]}
                - {name: a2, type: flip_cross, direction: sideways, channels: [nowhere]}
            """,
            "etc/rules.d/b.yaml": """
                - {name: dup, type: net_gex_sign, channels: [tty]}
                - {name: inline, type: threshold, field: spot, channels: [tty]}
            """,
            "etc/rules.d/c.yaml": "- {name: c, type: [unclosed\n",
            "etc/rules.d/d.yaml": "name: not-a-list\ntype: flip_cross\n",
            "etc/rules.d/e.yaml": "- 42\n",
        },
        cfg=CONFIG.replace('["rules.d/*.yaml"]', '["rules.d/*.yaml", "more/missing.yaml"]'),
    )
    text = problems_of(path)
    for fragment in [
        "rules.d/a.yaml[1].direction: expected one of up, down, any, got 'sideways'",
        "rules.d/a.yaml[1].channels[0]: unknown channel 'nowhere'",
        "rules.d/b.yaml[0].name: duplicate rule name 'dup' (also at rules.d/a.yaml[0])",
        "rules.d/b.yaml[1].name: duplicate rule name 'inline' (also at rules[0])",
        "rules.d/b.yaml[1].field: expected one of",
        "rules.d/c.yaml: line 2, column 1: invalid YAML",
        "invalid YAML",
        "rules.d/d.yaml: expected a list of rules, got a mapping",
        "rules.d/e.yaml[0]: expected FlipCross or NetGexSign",
        "rule_files[1]: no such file:",
    ]:
        assert fragment in text, f"missing {fragment!r} in:\n{text}"


def test_variables_expand_inside_rule_files(tmp_path, monkeypatch):
    monkeypatch.setenv("DESK_CHANNEL", "ops")
    path = write(
        tmp_path,
        {"etc/rules.d/x.yaml": '- {name: x, type: flip_cross, channels: ["${DESK_CHANNEL}"]}\n'},
    )
    assert config.load(path).rules[1].channels == ["ops"]


def test_a_file_matched_twice_is_read_once(tmp_path):
    path = write(
        tmp_path,
        {"etc/rules.d/x.yaml": "- {name: x, type: flip_cross, channels: [tty]}\n"},
        cfg=CONFIG.replace('["rules.d/*.yaml"]', '["rules.d/*.yaml", "rules.d/x.yaml"]'),
    )
    assert [r.name for r in config.load(path).rules] == ["inline", "x"]


def test_bad_rule_files_values(tmp_path):
    path = write(tmp_path, {}, cfg="rule_files: rules.d/*.yaml\n")
    assert "rule_files: expected a list" in problems_of(path)
    path = write(tmp_path, {}, cfg='rule_files: ["", 3]\n')
    text = problems_of(path)
    assert "rule_files[0]: empty pattern" in text
    assert "rule_files[1]: expected a string, got 3" in text


def test_check_reports_rule_file_problems_with_exit_2(tmp_path):
    path = write(
        tmp_path, {"etc/rules.d/a.yaml": "- {name: a, type: flip_cross, cooldown: soon}\n"}
    )
    proc = subprocess.run(
        [sys.executable, "-m", "gex_alertd", "check", "--offline", "--config", str(path)],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "rules.d/a.yaml[0].cooldown: expected a duration" in proc.stderr


def test_the_shipped_example_rules():
    cfg = config.load(ROOT / "config.example.yaml")
    assert cfg.rule_files == ["rules.d/*.yaml"]
    by_type = {type(r).__struct_config__.tag: r.name for r in cfg.rules}
    assert by_type == {
        "flip_cross": "flip-cross",
        "net_gex_sign": "gex-sign",
        "oi_change": "oi-jump",
        "wall_shift": "wall-shift",
        "repositioning": "repositioning",
    }
    assert sorted(p.name for p in (ROOT / "rules.d").glob("*.yaml")) == [
        "flip.yaml",
        "levels.yaml",
        "oi.yaml",
        "sign.yaml",
    ]
