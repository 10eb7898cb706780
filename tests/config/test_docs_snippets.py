"""Every YAML snippet in the README and docs/ passes the same loader and validator as `check`
(issue 16 item 4: the secrets example in docs/operations.md was invalid YAML and nothing
noticed). A mapping is a config (or the part of one it shows); a list is a rule file. Every
`${VAR}` a snippet uses is set to a value of the right shape, as an operator's would be."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import pytest

from gex_alertd import bounded_yaml
from gex_alertd import config as config_mod
from gex_alertd.config import ConfigError

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.M | re.S)
VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)")


def snippets() -> list[tuple[str, str]]:
    out = []
    for doc in DOCS:
        text = doc.read_text()
        for m in FENCE.finditer(text):
            if m.group(1).lower() in ("yaml", "yml"):
                line = text.count("\n", 0, m.start()) + 1
                out.append((f"{doc.relative_to(ROOT)}:{line}", m.group(2)))
    return out


SNIPPETS = snippets()


def test_the_docs_have_config_snippets() -> None:
    """The scan finds what is there (a broken fence pattern would pass every check below)."""
    files = {label.split(":")[0] for label, _ in SNIPPETS}
    assert {"README.md", "docs/operations.md"} <= files, SNIPPETS


def _value_for(name: str) -> str:
    if "SECRET" in name:
        return "whsec_" + base64.b64encode(b"docs-snippet-signing-key!").decode()
    if "URL" in name:
        return "https://hooks.example.com/services/T000/B000/docs"
    return "docs-snippet-" + name.lower()


@pytest.mark.parametrize("label, text", SNIPPETS, ids=[label for label, _ in SNIPPETS])
def test_snippet_is_a_valid_config_or_rule_file(
    label: str, text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in set(VAR.findall(text)):
        monkeypatch.setenv(name, _value_for(name))
    try:
        tree: Any = bounded_yaml.parse(text)
    except bounded_yaml.YamlRefused as exc:
        pytest.fail(f"{label}: {exc.problems}")
    if isinstance(tree, list):  # a rule file: give it the channels it routes to
        routed = {c for rule in tree for c in rule.get("channels", [])}
        tree = {"channels": {c: {"type": "console"} for c in routed}, "rules": tree}
    assert isinstance(tree, dict), f"{label}: neither a config nor a rule file"
    try:
        config_mod.parse(tree, label, ROOT)
    except ConfigError as exc:
        pytest.fail(f"{label}: {exc.problems}")
