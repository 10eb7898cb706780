"""`gex-alertd schema`: the published JSON Schemas are the command's output, and the shipped
config and rule files validate against them (an editor using the schema agrees with `check`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from click.testing import CliRunner

from gex_alertd.cli import main
from gex_alertd.schema import config_schema, render, rule_file_schema

ROOT = Path(__file__).resolve().parents[2]
REGENERATE = (
    "regenerate with: gex-alertd schema > docs/config.schema.json && "
    "gex-alertd schema --rule-file > docs/rules.schema.json"
)


def _as_json(tree: Any) -> Any:
    """A YAML tree as an editor's YAML language server sees it (an unquoted date is a string)."""
    return json.loads(json.dumps(tree, default=str))


def _load(path: Path) -> Any:
    return _as_json(yaml.safe_load(path.read_text()))


def _cli(*args: str) -> str:
    result = CliRunner().invoke(main, ["schema", *args])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize(
    ("args", "published"),
    [((), "docs/config.schema.json"), (("--rule-file",), "docs/rules.schema.json")],
)
def test_published_schema_is_the_commands_output(args: tuple[str, ...], published: str) -> None:
    assert (ROOT / published).read_text() == _cli(*args), REGENERATE


def test_schemas_are_valid_draft_2020_12() -> None:
    jsonschema.Draft202012Validator.check_schema(config_schema())
    jsonschema.Draft202012Validator.check_schema(rule_file_schema())


def test_example_config_and_every_rule_file_validate() -> None:
    jsonschema.validate(_load(ROOT / "config.example.yaml"), config_schema())
    rule_files = sorted((ROOT / "rules.d").glob("*.yaml"))
    assert rule_files
    for path in rule_files:
        jsonschema.validate(_load(path), rule_file_schema())


def test_durations_encode_as_seconds_and_accept_the_written_forms() -> None:
    schema = config_schema()
    redis = schema["$defs"]["RedisConfig"]["properties"]
    assert redis["retention"]["default"] == 7 * 86400
    validator = jsonschema.Draft202012Validator(schema)
    for good in ("7d", "1h30m", "500ms", "90", 3600, 0.5):
        assert validator.is_valid({"redis": {"retention": good}}), good
    for bad in ("7 days", "-1s", "soon", -5):
        assert not validator.is_valid({"redis": {"retention": bad}}), bad


def test_schema_refuses_what_check_refuses() -> None:
    """Unknown keys, unknown rule and channel types and bad enum values fail in the editor too."""
    validator = jsonschema.Draft202012Validator(config_schema())
    ok = {
        "channels": {"tty": {"type": "console"}},
        "rules": [{"name": "a", "type": "flip_cross", "direction": "up", "channels": ["tty"]}],
    }
    assert validator.is_valid(ok)
    bad = [
        {"sauce": {}},
        {"channels": {"tty": {"type": "carrier-pigeon"}}},
        {"channels": {"hook": {"type": "webhook"}}},  # url is required
        {"rules": [{"name": "a", "type": "flip_cross", "direction": "sideways"}]},
        {"rules": [{"name": "a", "type": "nope"}]},
        {"watch": {"market_hours": "lse"}},
        {"path": "/etc/x.yaml"},  # set by the loader, not a key
    ]
    for tree in bad:
        assert not validator.is_valid(tree), tree
    rules = jsonschema.Draft202012Validator(rule_file_schema())
    assert rules.is_valid(ok["rules"])
    assert not rules.is_valid({"name": "a"})  # a rule file is a list


def test_render_is_stable() -> None:
    assert render(config_schema()) == render(config_schema())
