"""Property-based fuzzing of the YAML structure of configs (issue 17: aliases, duplicate keys,
deep nesting, encodings), on top of the value mutations in tests/reliability/test_fuzz.py.

Each property states the exact outcome, not only "no crash": an alias tree within the bound
loads to what PyYAML's own loader makes of it and one beyond it is refused at an alias; a
duplicate key is named with both of its lines; nesting is refused exactly past the bound; a
config in any encoding loads when it is UTF-8 and is refused with the reason otherwise.
"""

from __future__ import annotations

import copy
import random
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import example, given
from hypothesis import strategies as st

from gex_alertd import bounded_yaml
from gex_alertd import config as config_mod
from gex_alertd.config import ConfigError
from tests.reliability.test_fuzz import FUZZ, VALID

# --- aliases -------------------------------------------------------------------------------


@st.composite
def alias_documents(draw: st.DrawFn) -> tuple[str, int]:
    """Levels of anchored lists, each level `fan` aliases of the one before (billion-laughs
    shaped, of random size); returns the text and how many nodes its aliases add."""
    levels = draw(st.integers(1, 7))
    fan = draw(st.integers(1, 9))
    leaf = draw(st.integers(1, 5))
    lines = [f"l0: &l0 [{', '.join(['x'] * leaf)}]"]
    size = {0: 1 + leaf}  # nodes of level i with every alias expanded
    added = 0
    for i in range(1, levels + 1):
        lines.append(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * fan)}]")
        size[i] = 1 + fan * size[i - 1]
        added += fan * size[i - 1]
    return "\n".join(lines) + "\n", added


@FUZZ
@given(doc=alias_documents())
def test_aliases_load_as_pyyaml_does_or_are_refused_past_the_bound(doc: tuple[str, int]) -> None:
    text, added = doc
    if added <= bounded_yaml.MAX_ALIAS_NODES:
        assert bounded_yaml.parse(text) == yaml.safe_load(text)
    else:
        with pytest.raises(bounded_yaml.YamlRefused) as err:
            bounded_yaml.parse(text)
        (problem,) = err.value.problems
        assert "aliases expand to more than 10000 nodes" in problem, problem


# --- duplicate keys -------------------------------------------------------------------------

keys = st.text(alphabet="abcdefghij_", min_size=1, max_size=6)
scalars = st.one_of(st.integers(-100, 100), st.sampled_from(["x", "true", "1.5", "'q'"]))


@st.composite
def mappings_with_a_duplicate(draw: st.DrawFn) -> tuple[str, str, int, int]:
    """Block-style nested mappings with one key repeated in one of them; returns the text,
    the key, and the 1-based lines of its first and second occurrence."""
    lines: list[str] = []
    chosen: list[tuple[str, int, int]] = []

    def emit(depth: int, budget: int, duplicate_here: bool) -> None:
        names = draw(st.lists(keys, min_size=1, max_size=4, unique=True))
        child = draw(st.integers(-1, len(names) - 1)) if depth < 4 and budget > 0 else -1
        dup_at = draw(st.integers(0, len(names) - 1)) if duplicate_here else -1
        first_line = 0
        for j, name in enumerate(names):
            if j == dup_at:
                first_line = len(lines) + 1
            if j == child:
                lines.append("  " * depth + f"{name}:")
                emit(depth + 1, budget - 1, False)
            else:
                lines.append("  " * depth + f"{name}: {draw(scalars)}")
        if duplicate_here:
            lines.append("  " * depth + f"{names[dup_at]}: {draw(scalars)}")
            chosen.append((names[dup_at], first_line, len(lines)))

    emit(0, draw(st.integers(0, 3)), True)
    (key, first, second) = chosen[0]
    return "\n".join(lines) + "\n", key, first, second


@FUZZ
@given(doc=mappings_with_a_duplicate())
def test_a_duplicate_key_is_named_with_both_lines(doc: tuple[str, str, int, int]) -> None:
    text, key, first, second = doc
    with pytest.raises(bounded_yaml.YamlRefused) as err:
        bounded_yaml.parse(text)
    (problem,) = err.value.problems
    assert problem.startswith(f"line {second}, column 1: duplicate key"), (problem, text)
    assert f"duplicate key {key!r} (first at line {first}, column 1)" in problem, (problem, text)


# --- nesting -------------------------------------------------------------------------------


def nested(depth: int, style: str) -> tuple[str, int]:
    """A document `depth` collections deep, and its depth in nodes (a scalar innermost counts)."""
    indent = ["  " * i for i in range(depth)]
    match style:
        case "flow-list":
            return "[" * depth + "]" * depth, depth
        case "flow-map":
            return "{a: " * (depth - 1) + "{}" + "}" * (depth - 1), depth
        case "block-list":
            return "".join(f"{p}-\n" for p in indent[:-1]) + f"{indent[-1]}- x", depth + 1
        case _:
            return "".join(f"{p}a:\n" for p in indent[:-1]) + f"{indent[-1]}b: 1", depth + 1


STYLES = ["flow-list", "flow-map", "block-list", "block-map"]


@FUZZ
@given(depth=st.integers(1, 400), style=st.sampled_from(STYLES))
@example(depth=64, style="flow-list")
@example(depth=65, style="flow-list")
@example(depth=63, style="block-map")
@example(depth=64, style="block-map")
def test_nesting_is_refused_exactly_past_the_bound(depth: int, style: str) -> None:
    text, nodes = nested(depth, style)
    if nodes <= bounded_yaml.MAX_DEPTH:
        assert bounded_yaml.parse(text) == yaml.safe_load(text)
    else:
        with pytest.raises(bounded_yaml.YamlRefused, match="nested deeper than 64 levels"):
            bounded_yaml.parse(text)


# --- encodings -----------------------------------------------------------------------------

ENCODINGS = ["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-32", "latin-1", "cp1252"]


@FUZZ
@given(
    comment=st.text(min_size=1, max_size=20).filter(lambda s: "\n" not in s and "\r" not in s),
    encoding=st.sampled_from(ENCODINGS),
    seed=st.integers(0, 2**16),
)
def test_encodings_load_when_utf8_and_are_refused_otherwise(
    tmp_path_factory: Any, comment: str, encoding: str, seed: int
) -> None:
    text = f"# {comment}\n" + yaml.safe_dump(copy.deepcopy(VALID))
    data = text.encode(encoding, errors="replace")
    path = tmp_path_factory.mktemp("enc") / "config.yaml"
    path.write_bytes(data)
    try:
        data.decode("utf-8")
        utf8 = True
    except UnicodeDecodeError:
        utf8 = False
    if utf8:  # loads, or a problem in the text itself (a NUL of UTF-16, a NEL ending the comment)
        try:
            config_mod.load(path)
        except ConfigError as exc:
            assert exc.problems and all("not UTF-8" not in p for p in exc.problems), exc.problems
    else:
        with pytest.raises(ConfigError) as err:
            config_mod.load(path)
        assert any("not UTF-8 text" in p for p in err.value.problems), err.value.problems
    # a stray byte anywhere: still a clean outcome
    rng = random.Random(seed)
    at = rng.randrange(len(data))
    path.write_bytes(data[:at] + bytes([rng.randrange(256)]) + data[at:])
    try:
        config_mod.load(path)
    except ConfigError as exc:
        assert exc.problems


def test_fuzz_base_is_valid(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(copy.deepcopy(VALID)))
    config_mod.load(path)


YAML_CHARS = "ab:- &*[]{},!?'\"\n#|>%@`0123456789xe.\x00\ud800"
yaml_ish = st.text(alphabet=st.sampled_from(list(YAML_CHARS)))


@FUZZ
@given(text=st.one_of(st.text(max_size=200), yaml_ish))
@example(text="a: 0x" + "f" * 5000)
@example(text="a: " + "9" * 5000)
@example(text="a: \ud800")
@example(text="&a [*a]")
def test_any_text_loads_or_is_refused_never_raises_otherwise(text: str) -> None:
    try:
        tree = bounded_yaml.parse(text)
    except bounded_yaml.YamlRefused as exc:
        assert exc.problems and all(isinstance(p, str) and p for p in exc.problems)
        return
    repr(tree)  # what an error message does with a value: must not raise either
