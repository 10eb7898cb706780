"""Hostile config files (issue 17 items 4, 5, 10): `gex-alertd check` on each, as a real
process under a memory limit; each exits 2 naming the file and the place, with no traceback.
The loader itself (`bounded_yaml`) is tested here too, on what the CLI cannot show."""

from __future__ import annotations

from pathlib import Path

import pytest

from gex_alertd import bounded_yaml
from gex_alertd import config as config_mod
from gex_alertd.config import ConfigError
from tests.hostile.support_config import CONFIGS, check_offline


def assert_refused(code: int, output: str, path: Path, *expected: str) -> None:
    assert code == 2, output
    assert "Traceback" not in output, output
    assert f"invalid config {path}" in output, output
    for text in expected:
        assert text in output, output


# --- item 4: aliases and size ------------------------------------------------------------


def test_billion_laughs_is_refused_at_the_alias(tmp_path: Path) -> None:
    path = CONFIGS / "billion_laughs.yaml"
    assert path.stat().st_size < 1024  # the whole attack is a few hundred bytes
    code, out = check_offline(path)
    assert_refused(code, out, path, "line 6", "aliases expand to more than 10000 nodes")


def test_recursive_alias_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("watch: &w {symbols: [SPY], again: *w}\n")
    code, out = check_offline(path)
    assert_refused(code, out, path, "line 1", "recursive alias *w")


def test_aliases_within_the_bound_still_work() -> None:
    cfg = config_mod.load(CONFIGS / "merge_keys.yaml")
    flip, qqq = cfg.rules
    assert (flip.name, qqq.name) == ("spy-flip", "qqq-flip")
    assert qqq.direction == "up" and qqq.cooldown == flip.cooldown == 600
    assert qqq.channels == ["tty"]


def test_a_3mb_file_is_refused_by_size_without_parsing(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    line = "# " + "x" * 97 + "\n"
    path.write_text("watch: {symbols: [SPY]}\n" + line * 30_000)  # 3 MB of valid YAML
    code, out = check_offline(path)
    assert_refused(code, out, path, "larger than 1048576 bytes", "GEX_ALERTD_MAX_CONFIG_BYTES")
    # the cap is the operator's to raise
    code, out = check_offline(path, GEX_ALERTD_MAX_CONFIG_BYTES=str(4 * 1024 * 1024))
    assert code == 0, out


def test_dev_zero_is_refused_by_size() -> None:
    code, out = check_offline("/dev/zero")
    assert_refused(code, out, Path("/dev/zero"), "larger than 1048576 bytes")


def test_a_bad_size_cap_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("{}\n")
    code, out = check_offline(path, GEX_ALERTD_MAX_CONFIG_BYTES="lots")
    assert_refused(code, out, path, "GEX_ALERTD_MAX_CONFIG_BYTES: expected a number of bytes")


def test_rule_files_are_bounded_too(tmp_path: Path) -> None:
    (tmp_path / "bomb.yaml").write_text(
        (CONFIGS / "billion_laughs.yaml").read_text().replace("watch: {symbols: *h}", "x: *h")
    )
    (tmp_path / "config.yaml").write_text('rule_files: ["*.yaml"]\n')
    with pytest.raises(ConfigError) as err:
        config_mod.load(tmp_path / "config.yaml")
    assert any(
        p.startswith("bomb.yaml: line 6") and "aliases expand" in p for p in err.value.problems
    ), err.value.problems


# --- item 5: encodings, impossible dates, nesting ------------------------------------------


def test_non_utf8_config_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(b"watch:\n  symbols: [SPY]\n# caf\xe9 (latin-1)\n")
    code, out = check_offline(path)
    assert_refused(code, out, path, "line 3: not UTF-8 text")


def test_utf16_config_gets_a_hint(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes("watch: {symbols: [SPY]}\n".encode("utf-16"))
    code, out = check_offline(path)
    assert_refused(code, out, path, "not UTF-8 text", "looks like UTF-16")


def test_non_utf8_credential_file_names_the_key_and_file(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "FLASHALPHA_API_KEY").write_bytes(b"\xff\xfe\x00key")
    path = tmp_path / "config.yaml"
    path.write_text("source: {kind: flowgex, api_key: '${FLASHALPHA_API_KEY}'}\n")
    code, out = check_offline(path, CREDENTIALS_DIRECTORY=str(creds))
    assert_refused(
        code,
        out,
        path,
        "source.api_key: ${FLASHALPHA_API_KEY} from $CREDENTIALS_DIRECTORY/FLASHALPHA_API_KEY",
        "not UTF-8 text",
    )


def test_impossible_expiry_names_its_path() -> None:
    path = CONFIGS / "impossible_expiry.yaml"
    code, out = check_offline(path)
    expected = "watch.symbols[1].expiry: invalid RFC3339 encoded date, got '2026-13-45'"
    assert_refused(code, out, path, expected)


@pytest.mark.parametrize(
    "text",
    [
        "watch: " + "[" * 600 + "]" * 600,  # flow style
        "watch:\n" + "".join("  " * i + "- \n" for i in range(1, 600)),  # block style
        "watch: " + "{a: " * 600 + "1" + "}" * 600,
    ],
    ids=["flow-lists", "block-lists", "flow-maps"],
)
def test_deep_nesting_is_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text + "\n")
    code, out = check_offline(path)
    assert_refused(code, out, path, "nested deeper than 64 levels")


def test_an_alias_may_not_smuggle_depth_past_the_bound() -> None:
    deep = "[" * 40 + "]" * 40
    with pytest.raises(bounded_yaml.YamlRefused, match="nested deeper than 64"):
        bounded_yaml.parse(f"a: &d {deep}\nb: " + "[" * 30 + "*d" + "]" * 30 + "\n")


# --- item 10: duplicate keys ---------------------------------------------------------------


def test_duplicate_rules_key_names_both_lines() -> None:
    path = CONFIGS / "duplicate_rules_key.yaml"
    code, out = check_offline(path)
    assert_refused(code, out, path, "line 7, column 1: duplicate key 'rules' (first at line 3")
    assert "0 rules" not in out


def test_every_duplicate_key_is_listed_at_once() -> None:
    with pytest.raises(bounded_yaml.YamlRefused) as err:
        bounded_yaml.parse("a:\n  b: 1\n  b: 2\nc: {x: 1, x: 2}\na: 3\n")
    assert err.value.problems == [
        "line 3, column 3: duplicate key 'b' (first at line 2, column 3)",
        "line 4, column 11: duplicate key 'x' (first at line 4, column 5)",
        "line 5, column 1: duplicate key 'a' (first at line 1, column 1)",
    ]


def test_a_key_overriding_a_merge_is_not_a_duplicate() -> None:
    tree = bounded_yaml.parse("d: &d {x: 1, y: 2}\ne: {<<: *d, x: 3}\n")
    assert tree["e"] == {"x": 3, "y": 2}


def test_duplicate_key_in_a_rule_file_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "flip.yaml").write_text(
        "- name: a\n  type: flip_cross\n  name: b\n  channels: [tty]\n"
    )
    (tmp_path / "config.yaml").write_text(
        'channels: {tty: {type: console}}\nrule_files: ["flip.yaml"]\n'
    )
    with pytest.raises(ConfigError) as err:
        config_mod.load(tmp_path / "config.yaml")
    assert err.value.problems == [
        "flip.yaml: line 3, column 3: duplicate key 'name' (first at line 1, column 3)"
    ]


def test_rule_file_globs_are_bounded_in_count(tmp_path: Path) -> None:
    from gex_alertd import rule_files

    many = tmp_path / "rules.d"
    many.mkdir()
    for i in range(rule_files.MAX_FILES + 1):
        (many / f"r{i:04d}.yaml").write_text("[]\n")
    (tmp_path / "config.yaml").write_text('rule_files: ["rules.d/*.yaml"]\n')
    with pytest.raises(ConfigError) as err:
        config_mod.load(tmp_path / "config.yaml")
    assert err.value.problems == ["rule_files[0]: matches more than 256 files (line 1)"]
    (many / "r0000.yaml").unlink()  # exactly at the cap: fine
    config_mod.load(tmp_path / "config.yaml")


@pytest.mark.parametrize(
    "number",
    ["9" * 5000, "0x" + "f" * 100_000, "18446744073709551616"],
    ids=["5000-digits", "huge-hex", "2**64"],
)
def test_an_integer_beyond_64_bits_is_refused_at_its_line(tmp_path: Path, number: str) -> None:
    """5,000 digits raised a bare ValueError in the loader; a huge hex number loaded, and the
    error message that quoted it raised one (Python's 4,300-digit conversion limit)."""
    path = tmp_path / "config.yaml"
    path.write_text(f"watch:\n  interval_s: {number}\n")
    code, out = check_offline(path)
    assert_refused(code, out, path, "line 2, column 15", "an integer beyond 64 bits")


def test_integers_within_64_bits_still_load() -> None:
    tree = bounded_yaml.parse("a: 18446744073709551615\nb: 0x1f\nc: -0b101\nd: 1_000\n")
    assert tree == {"a": 2**64 - 1, "b": 31, "c": -5, "d": 1000}


def test_a_lone_surrogate_is_refused() -> None:
    with pytest.raises(bounded_yaml.YamlRefused, match="not UTF-8 text"):
        bounded_yaml.parse("a: \ud800\n")


def test_lines_follow_merge_keys_and_stay_bounded_with_aliases() -> None:
    """The key lines the config loader appends to problems: a merged key points at the line it
    was written on; a document at the alias bound is walked in bounded time, like the tree."""
    lines: bounded_yaml.Lines = {}
    tree = bounded_yaml.parse("d: &d {x: 1}\ne:\n  <<: *d\n  y: [1, {z: 2}]\n", lines)
    assert tree == {"d": {"x": 1}, "e": {"x": 1, "y": [1, {"z": 2}]}}
    assert lines == {
        "d": 1, "d.x": 1, "e": 2, "e.x": 1, "e.y": 4, "e.y[0]": 4, "e.y[1]": 4, "e.y[1].z": 4,
    }  # fmt: skip
    wide = "a: &a [" + ", ".join(["1"] * 99) + "]\nb: [" + ", ".join(["*a"] * 99) + "]\n"
    lines = {}
    bounded_yaml.parse(wide, lines)
    assert len(lines) == 2 + 99 + 99 + 99 * 99
