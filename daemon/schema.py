"""`gex-alertd schema`: the JSON Schema of the config file and of a rule file, generated from
the typed config (`config.Config`, the rule registry), so an editor completes and checks
`config.yaml` and `rules.d/*.yaml` with exactly what `gex-alertd check` accepts.

The schema is a guide for editors, not the validator: `check` still runs the struct checks the
schema cannot express (cross-references, URL shapes, `${VAR}` expansion into non-string keys).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from types import GenericAlias
from typing import Any

import click
import msgspec
from msgspec import _json_schema

from gex_alertd.config import Config
from gex_alertd.rules.duration import Duration
from gex_alertd.rules.registry import rule_config_union

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
# what parse_duration accepts: plain seconds, or number+unit parts such as 1h30m, 500ms
DURATION_PATTERN = r"^\s*(\d+(\.\d+)?\s*(ms|s|m|h|d|w)\s*)+$|^\s*\d+(\.\d+)?\s*$"
DURATION_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "number", "minimum": 0},
        {"type": "string", "pattern": DURATION_PATTERN},
    ],
    "description": "seconds, or a duration such as 500ms, 30s, 10m, 1h30m, 7d",
}


def _schema_hook(tp: type) -> dict[str, Any]:
    if tp is Duration:
        return dict(DURATION_SCHEMA)
    raise NotImplementedError


def _enc_hook(obj: Any) -> Any:
    if isinstance(obj, Duration):
        return float(obj)
    raise NotImplementedError(f"no JSON form for {type(obj).__name__}")


@contextlib.contextmanager
def _duration_defaults() -> Iterator[None]:
    """msgspec encodes field defaults with a `to_builtins` that takes no enc_hook, so a default
    of a custom type (every `Duration(...)` default here) cannot be written
    (https://github.com/msgspec/msgspec/issues/679). Until it can, its module-level
    `to_builtins` is given ours for the length of one call; the published-file test
    (tests/config/test_schema.py) notices if msgspec's internals change under it."""
    original = _json_schema.to_builtins

    def to_builtins(obj: Any, **kwargs: Any) -> Any:
        return original(obj, enc_hook=_enc_hook, **kwargs)

    _json_schema.to_builtins = to_builtins  # see the docstring
    try:
        yield
    finally:
        _json_schema.to_builtins = original


def _components() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    rule_list = GenericAlias(list, rule_config_union())  # a union built at run time
    with _duration_defaults():
        (config, rules), defs = msgspec.json.schema_components(
            [Config, rule_list], schema_hook=_schema_hook, ref_template="#/$defs/{name}"
        )
    return config, rules, defs


def config_schema() -> dict[str, Any]:
    """The config file: `Config` with its rules typed (they are parsed separately in
    config.parse) and without `path` (set by the loader, not a YAML key)."""
    config_ref, rules, defs = _components()
    name = config_ref["$ref"].rsplit("/", 1)[1]
    body = defs[name]
    body["properties"].pop("path", None)
    body["properties"]["rules"] = {**rules, "default": []}
    return {
        "$schema": SCHEMA_DIALECT,
        "title": "gex-alertd config",
        "$ref": f"#/$defs/{name}",
        "$defs": defs,
    }


def rule_file_schema() -> dict[str, Any]:
    """A rule file (`rule_files:`): a YAML list of rules."""
    _config, rules, defs = _components()
    defs = {k: v for k, v in defs.items() if k != "Config"}
    return {
        "$schema": SCHEMA_DIALECT,
        "title": "gex-alertd rule file",
        **rules,
        "$defs": _reachable(rules, defs),
    }


def _reachable(root: Any, defs: dict[str, Any]) -> dict[str, Any]:
    """The definitions `root` refers to, directly or through other definitions."""
    seen: dict[str, Any] = {}
    todo = [root]
    while todo:
        node = todo.pop()
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                name = ref.rsplit("/", 1)[1]
                if name not in seen:
                    seen[name] = defs[name]
                    todo.append(defs[name])
            todo.extend(node.values())
        elif isinstance(node, list):
            todo.extend(node)
    return dict(sorted(seen.items()))


def render(schema: dict[str, Any]) -> str:
    """Stable text (sorted keys, two-space indent, final newline): the published files in
    docs/ are this output byte for byte."""
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


@click.command("schema")
@click.option(
    "--rule-file",
    is_flag=True,
    help="The schema of a rule file (a list of rules) instead of the config file.",
)
def schema(rule_file: bool) -> None:
    """Print the JSON Schema of the config (or of a rule file) for editors and CI."""
    click.echo(render(rule_file_schema() if rule_file else config_schema()), nl=False)
