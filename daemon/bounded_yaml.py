"""YAML from files an operator (or an attacker with write access to one) controls, in bounded
time and memory, with every problem named by its line.

`yaml.safe_load` alone is not safe for that: a 342-byte "billion laughs" file (aliases of
aliases) is a few shared objects after loading, but every walk over the tree (`${VAR}`
expansion, the typed conversion) expands it to 10^9 nodes; 500 nested `[` overflow the
recursive composer with a RecursionError; `2026-13-45` looks like a date and raises a bare
ValueError; a duplicate key silently replaces the first (a second `rules: []` dropped every
rule). Here:

- the file is read up to a byte cap (1 MB; `GEX_ALERTD_MAX_CONFIG_BYTES`) and must be UTF-8;
- aliases are allowed (`<<: *defaults` is a common way to share settings across rules), but
  together they may add at most `MAX_ALIAS_NODES` nodes to the document, and a recursive
  alias is refused;
- nesting deeper than `MAX_DEPTH` levels is refused (a config needs about six);
- a duplicate key is a problem naming both lines; every one in the file is reported;
- a scalar that looks like a date but is none stays a string, so the typed conversion names
  its path (`watch.symbols[2].expiry: Invalid date`).

libyaml's parser does the scanning (fast, in C); composing and constructing are PyYAML's own
Python classes with the checks above, so nothing unbounded runs before a check can stop it.
This module never raises anything but `YamlRefused` for bad input.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from yaml._yaml import CParser  # libyaml (yaml.cyaml re-exports it untyped)
from yaml.composer import Composer, ComposerError
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import Resolver

MAX_BYTES_ENV = "GEX_ALERTD_MAX_CONFIG_BYTES"
DEFAULT_MAX_BYTES = 1024 * 1024
MAX_ALIAS_NODES = 10_000
MAX_DEPTH = 64


class YamlRefused(Exception):
    """Every problem found, each a line for the operator (`line 3: duplicate key ...`)."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


def max_bytes() -> int:
    """The byte cap for config, rule, scenario and credential files."""
    raw = os.environ.get(MAX_BYTES_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_BYTES
    try:
        value = int(raw)
    except ValueError:
        raise YamlRefused([f"{MAX_BYTES_ENV}: expected a number of bytes, got {raw!r}"]) from None
    if value < 1024:
        raise YamlRefused([f"{MAX_BYTES_ENV}: must be >= 1024, got {value}"])
    return value


def read_text(path: str | os.PathLike[str], limit: int | None = None) -> str:
    """The file's text: at most `limit` bytes (read no further, so `/dev/zero` is refused at
    once), UTF-8 (a leading BOM is dropped)."""
    limit = max_bytes() if limit is None else limit
    try:
        with Path(path).open("rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise YamlRefused([f"cannot read: {exc.strerror or exc}"]) from None
    if len(data) > limit:
        raise YamlRefused(
            [f"larger than {limit} bytes (raise the cap with {MAX_BYTES_ENV} if it is right)"]
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        utf16 = data[:2] in (b"\xff\xfe", b"\xfe\xff")
        hint = " (it looks like UTF-16: save it as UTF-8)" if utf16 else ""
        raise YamlRefused([f"line {line}: not UTF-8 text (byte {exc.start}){hint}"]) from None


def _where(node: Node) -> str:
    mark = node.start_mark
    return f"line {mark.line + 1}, column {mark.column + 1}"


class _BoundedComposer(Composer):
    """PyYAML's composer, counting what aliases add and how deep the nodes nest."""

    # from the parser this composer is mixed with
    check_event: Callable[..., bool]
    peek_event: Callable[[], Any]

    def __init__(self) -> None:
        super().__init__()
        self._depth = 0
        self._alias_nodes = 0
        # per finished node: (node count with aliases expanded, height); an anchored node not
        # in here yet is still being composed, so an alias to it is recursive
        self._measure: dict[int, tuple[int, int]] = {}

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        if self.check_event(AliasEvent):
            event = self.peek_event()
            target = self.anchors.get(event.anchor)
            if target is not None:
                if id(target) not in self._measure:
                    raise ComposerError(
                        None, None, f"recursive alias *{event.anchor}", event.start_mark
                    )
                size, height = self._measure[id(target)]
                self._alias_nodes += size
                if self._alias_nodes > MAX_ALIAS_NODES:
                    raise ComposerError(
                        None,
                        None,
                        f"aliases expand to more than {MAX_ALIAS_NODES} nodes (refused: an "
                        "alias bomb, or write the repeated parts out)",
                        event.start_mark,
                    )
                if self._depth + height >= MAX_DEPTH:
                    raise ComposerError(
                        None, None, f"nested deeper than {MAX_DEPTH} levels", event.start_mark
                    )
            return super().compose_node(parent, index)  # undefined aliases: PyYAML's error
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise ComposerError(
                None, None, f"nested deeper than {MAX_DEPTH} levels", self.peek_event().start_mark
            )
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if node is not None:
            self._measure[id(node)] = self._measure_node(node)
        return node

    def _measure_node(self, node: Node) -> tuple[int, int]:
        if isinstance(node, SequenceNode):
            children = list(node.value)
        elif isinstance(node, MappingNode):
            children = [n for pair in node.value for n in pair]
        else:
            return 1, 0
        size, height = 1, 0
        for child in children:
            s, h = self._measure.get(id(child), (1, 0))
            size += s
            height = max(height, h + 1)
        return size, height


_MERGE_TAGS = frozenset({"tag:yaml.org,2002:merge", "tag:yaml.org,2002:value"})


class _CheckingConstructor(SafeConstructor):
    """Records duplicate keys (explicit ones; a key that overrides a `<<` merge is YAML's
    merge semantics, not a duplicate) and keeps impossible dates as strings."""

    def __init__(self) -> None:
        super().__init__()
        self.duplicates: list[tuple[int, int, str]] = []  # line, column, problem

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        first: dict[Any, Node] = {}
        for key_node, _value in node.value:
            if not isinstance(key_node, ScalarNode) or key_node.tag in _MERGE_TAGS:
                continue
            key = self.construct_object(key_node)
            try:
                earlier = first.setdefault(key, key_node)
            except TypeError:  # unhashable: PyYAML's own error follows
                continue
            if earlier is not key_node:
                mark = key_node.start_mark
                self.duplicates.append(
                    (
                        mark.line,
                        mark.column,
                        f"{_where(key_node)}: duplicate key {key!r} (first at {_where(earlier)})",
                    )
                )
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_int(self, node: ScalarNode) -> int:
        # 5,000 decimal digits raised a bare ValueError; 0x + 100,000 digits loaded, and then
        # printing it in an error message raised one. No config number needs more than 64 bits.
        try:
            value = super().construct_yaml_int(node)
        except ValueError:
            value = None
        if value is None or value.bit_length() > 64:
            raise ConstructorError(
                None, None, "an integer beyond 64 bits (no setting takes one)", node.start_mark
            )
        return value

    def construct_yaml_timestamp(self, node: ScalarNode) -> Any:
        try:
            return super().construct_yaml_timestamp(node)
        except ValueError:  # 2026-13-45: the typed conversion names where a date was expected
            return self.construct_scalar(node)


_CheckingConstructor.yaml_constructors = {
    **SafeConstructor.yaml_constructors,
    "tag:yaml.org,2002:timestamp": _CheckingConstructor.construct_yaml_timestamp,
    "tag:yaml.org,2002:int": _CheckingConstructor.construct_yaml_int,
}


class _Loader(_BoundedComposer, CParser, _CheckingConstructor, Resolver):
    def __init__(self, stream: str) -> None:
        CParser.__init__(self, stream)
        _BoundedComposer.__init__(self)
        _CheckingConstructor.__init__(self)
        Resolver.__init__(self)


def describe_error(exc: Exception) -> str:
    """`line 3, column 7: invalid YAML: <what the parser says>` for a yaml.YAMLError."""
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    problem = getattr(exc, "problem", None) or str(exc)
    return f"{where}invalid YAML: {problem}"


# where each key and list item of a document starts: its path as the config loader names it
# (`rules[2].direction`) -> its 1-based line, so a problem can say where to look
Lines = dict[str, int]


def parse(text: str, lines: Lines | None = None) -> Any:
    """The YAML document in `text`; YamlRefused listing every problem otherwise. `lines`, when
    given, is filled with the line of every mapping key and list item (`Lines`)."""
    try:
        loader = _Loader(text)
    except UnicodeEncodeError as exc:  # a lone surrogate: only from a str not read from a file
        raise YamlRefused([f"not UTF-8 text (character {exc.start})"]) from None
    try:
        node = loader.get_single_node()
        tree = None if node is None else loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise YamlRefused([describe_error(exc)]) from None
    except RecursionError:  # the depth bound should make this unreachable; never a traceback
        raise YamlRefused([f"nested deeper than {MAX_DEPTH} levels"]) from None
    finally:
        loader.dispose()
    if loader.duplicates:
        raise YamlRefused([problem for *_at, problem in sorted(loader.duplicates)])
    if lines is not None and node is not None:
        _note_lines(node, "", lines)
    return tree


def _note_lines(node: Node, path: str, lines: Lines) -> None:
    """The line of each key and item under `node`. Merge keys were flattened into the mapping
    by the constructor, so a merged key points at the line it was written on (its anchor's);
    aliases are walked as often as they are used, which the alias bound keeps small."""
    if isinstance(node, MappingNode):
        for key, value in node.value:
            if isinstance(key, ScalarNode) and key.value != "<<":
                at = f"{path}.{key.value}" if path else str(key.value)
                lines.setdefault(at, key.start_mark.line + 1)
                _note_lines(value, at, lines)
    elif isinstance(node, SequenceNode):
        for i, item in enumerate(node.value):
            at = f"{path}[{i}]"
            lines.setdefault(at, item.start_mark.line + 1)
            _note_lines(item, at, lines)


def load(path: str | os.PathLike[str], limit: int | None = None, lines: Lines | None = None) -> Any:
    """Read (bounded) and parse one YAML file (`lines`: as for `parse`)."""
    return parse(read_text(path, limit), lines)
