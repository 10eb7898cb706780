"""Rule files: the config's `rule_files:` globs, each matching file a YAML list of rules.

A desk keeps one file per concern (flip, sign, OI) the way Prometheus keeps `rule_files` and
ElastAlert a rules folder, and edits them without touching the daemon's own config; SIGHUP
re-reads them with the config. Globs are relative to the config file, so a unit that runs from
`/` finds `rules.d/` next to `/etc/gex-alertd/config.yaml`.

This module only finds and reads the files. It never raises on bad content: every problem is
recorded under the file's name (`rules.d/flip.yaml: ...`), and the typed conversion later names
the path inside the file (`rules.d/flip.yaml[2].direction`), so `check` reports all of them.
"""

from __future__ import annotations

import glob
import itertools
from pathlib import Path
from typing import Any, NamedTuple

from gex_alertd import bounded_yaml
from gex_alertd.typedconfig import Problems

_MAGIC = frozenset("*?[")
# each file may be up to the byte cap (bounded_yaml); this bounds how many a config can pull in
# (a `/**/*.yaml` would otherwise read every YAML file on the machine)
MAX_FILES = 256


class RuleFile(NamedTuple):
    label: str  # how problems name the file: relative to the config's folder when inside it
    rules: list[Any]  # the raw YAML items, converted and checked by the config loader
    lines: bounded_yaml.Lines  # where each rule and key is in the file (`[0].direction`)


def read(patterns: Any, base_dir: Path, problems: Problems) -> list[RuleFile]:
    """The files the patterns match, in pattern order and sorted within a glob; a file matched
    twice is read once. A glob that matches nothing is fine (an empty `rules.d/`); a plain path
    that does not exist is a problem, since it is almost always a typo."""
    if not isinstance(patterns, list):
        return []  # the typed conversion of `rule_files` reports the wrong type
    seen: set[Path] = set()
    out: list[RuleFile] = []
    for i, pattern in enumerate(patterns):
        if not isinstance(pattern, str):
            continue  # the typed conversion of `rule_files` reports it
        if not pattern.strip():
            problems.add(f"rule_files[{i}]", "empty pattern")
            continue
        full = base_dir / Path(pattern).expanduser()
        if _MAGIC.isdisjoint(pattern):
            if not full.is_file():
                problems.add(f"rule_files[{i}]", f"no such file: {full}")
                continue
            matches = [full]
        else:
            found = list(itertools.islice(glob.iglob(str(full), recursive=True), MAX_FILES + 1))
            if len(found) > MAX_FILES:
                problems.add(f"rule_files[{i}]", f"matches more than {MAX_FILES} files")
                continue
            matches = [Path(m) for m in sorted(found)]
        for path in matches:
            resolved = path.resolve()
            if resolved in seen or not resolved.is_file():
                continue
            if len(seen) == MAX_FILES:
                problems.add(f"rule_files[{i}]", f"more than {MAX_FILES} rule files in all")
                return out
            seen.add(resolved)
            label = _label(path, base_dir)
            lines: bounded_yaml.Lines = {}
            items = _read_one(path, label, problems, lines)
            if items is not None:
                out.append(RuleFile(label, items, lines))
    return out


def _label(path: Path, base_dir: Path) -> str:
    try:
        return str(path.relative_to(base_dir))
    except ValueError:
        return str(path)


def _read_one(
    path: Path, label: str, problems: Problems, lines: bounded_yaml.Lines
) -> list[Any] | None:
    try:
        tree = bounded_yaml.load(path, lines=lines)
    except bounded_yaml.YamlRefused as exc:
        for problem in exc.problems:
            problems.add(label, problem)
        return None
    if tree is None:  # an empty file: no rules yet
        return []
    if not isinstance(tree, list):
        kind = "a mapping" if isinstance(tree, dict) else repr(tree)
        problems.add(label, f"expected a list of rules, got {kind}")
        return None
    return tree
