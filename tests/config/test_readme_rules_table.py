"""The README's rules table is the rule registry: one row per rule type, naming every one of
that type's own fields, the values of each choice field (`direction: up|down|any`) and the defaults
it states (`confirm` (2), `for` (`5m`), severity `critical` by default); and the fields every
rule shares are the ones the README's "Every rule:" line lists (design.md "Rules", contract:
type names and fields)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import msgspec
import pytest

from gex_alertd.rules.base import RuleBase
from gex_alertd.rules.duration import Duration, parse_duration
from gex_alertd.rules.registry import RULE_TYPES

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
SECTION = README.split("\n### Rules\n", 1)[1].split("\n#### ", 1)[0]
BY_TAG: dict[str, type[RuleBase]] = {str(t.__struct_config__.tag): t for t in RULE_TYPES}


def _fields(tp: type[msgspec.Struct]) -> dict[str, msgspec.inspect.Field]:
    info = msgspec.inspect.type_info(tp)
    assert isinstance(info, msgspec.inspect.StructType)
    return {f.encode_name: f for f in info.fields}


COMMON = set(_fields(RuleBase)) | {"type"}


def rows() -> dict[str, tuple[str, str]]:
    """rule type -> (fields cell, fires-when cell)."""
    out = {}
    for line in SECTION.splitlines():
        m = re.match(r"\| `(\w+)` \| (.*?) \| (.*) \|$", line)
        if m is not None:
            out[m.group(1)] = (m.group(2), m.group(3))
    return out


ROWS = rows()


def test_one_row_per_rule_type() -> None:
    assert sorted(ROWS) == sorted(BY_TAG)


def test_every_rule_line_names_the_shared_fields() -> None:
    line = SECTION.split("Every rule:", 1)[1].split("All `*_pct`", 1)[0]
    named = {re.split(r"[:\s]", tok, maxsplit=1)[0] for tok in re.findall(r"`([^`]+)`", line)}
    assert COMMON <= named


def _named(cell: str) -> dict[str, str]:
    """Field name -> the rest of its backticked token (`direction: up\\|down\\|any`)."""
    out: dict[str, str] = {}
    for tok in re.findall(r"`([^`]+)`", cell):
        name, _, rest = tok.partition(":")
        if re.fullmatch(r"[a-z_]+", name):
            out.setdefault(name, rest.strip())
    return out


@pytest.mark.parametrize("tag", sorted(BY_TAG))
def test_the_row_names_the_types_fields(tag: str) -> None:
    """Every field of the type is in its row, and every `name: a|b` choice there is a field (a
    row also quotes values and feed names in backticks, so bare names are not checked)."""
    own = set(_fields(BY_TAG[tag])) - COMMON
    named = _named(ROWS[tag][0])
    assert sorted(own - set(named)) == [], f"{tag}: fields with no mention in its README row"
    choices = {n for n, rest in named.items() if "|" in rest}
    assert choices <= own, f"{tag}: README choices for fields it has not"


@pytest.mark.parametrize("tag", sorted(BY_TAG))
def test_the_stated_choices_are_the_codes(tag: str) -> None:
    for name, rest in _named(ROWS[tag][0]).items():
        field = _fields(BY_TAG[tag]).get(name)
        if field is None or not isinstance(field.type, msgspec.inspect.LiteralType) or not rest:
            continue
        stated = set(rest.replace("\\", "").split("|"))
        assert stated == set(field.type.values), f"{tag}.{name}"


def _stated_defaults(tag: str) -> dict[str, str]:
    """`confirm` (2), `for` (`5m`), `max_age` (`5m`): the value in parentheses after a field."""
    cell = ROWS[tag][0]
    return {
        m.group(1): m.group(2).strip("`") for m in re.finditer(r"`(\w+)` \((`?[\w.]+`?)\)", cell)
    }


def _same(text: str, value: Any) -> bool:
    if isinstance(value, Duration):
        return parse_duration(text) == value
    return float(text) == value


def test_defaults_are_stated_somewhere() -> None:
    assert sum(len(_stated_defaults(tag)) for tag in BY_TAG) >= 5


@pytest.mark.parametrize("tag", sorted(BY_TAG))
def test_the_stated_defaults_are_the_codes(tag: str) -> None:
    fields = _fields(BY_TAG[tag])
    for name, text in _stated_defaults(tag).items():
        assert _same(text, fields[name].default), f"{tag}.{name}: README {text}"


@pytest.mark.parametrize("tag", sorted(BY_TAG))
def test_the_default_severity_is_the_stated_one(tag: str) -> None:
    """`warning` unless the row says `severity `critical` by default`."""
    m = re.search(r"severity `(\w+)` by default", ROWS[tag][0] + ROWS[tag][1])
    assert _fields(BY_TAG[tag])["severity"].default == (m.group(1) if m else "warning")
