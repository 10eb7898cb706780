"""Convert a YAML tree into typed msgspec structs, collecting every problem with its path.

msgspec stops at the first error; an operator fixing a config wants all of them at once
(`rules[2].direction: expected one of up, down, any`), so this walks the struct definitions
field by field and only hands leaves to msgspec.
"""

from __future__ import annotations

import math
import re
import types
import typing
from collections.abc import Collection
from datetime import date
from typing import Any, Literal, Union, get_args, get_origin

import msgspec

from gex_alertd import redaction
from gex_alertd.rules.duration import Duration, parse_duration

_FIELD_OF = re.compile(r"[.\[]")  # `follow_up[0]` and `sentinel.hosts` are about their first part


def _dec_hook(type_: type, obj: Any) -> Any:
    if type_ is Duration:
        return parse_duration(obj)
    raise NotImplementedError


class Problems(list[str]):
    def add(self, path: str, msg: str) -> None:
        self.append(f"{path}: {msg}" if path else msg)


_EXPECTED = re.compile(r"Expected `([^`]+)`, got `[^`]+`$")
# msgspec's type names as a YAML writer knows them
_YAML_NAMES = {
    "float": "a number",
    "int": "an integer",
    "str": "a string",
    "bool": "true or false",
    "array": "a list",
    "object": "a mapping",
}
_LAST_STEP = re.compile(r"(?:\.[^.\[]*|\[\d+\])$")


def placed(problem: str, lines: dict[str, int], prefix: str = "") -> str | None:
    """`problem` ("<path>: <what>") with the line of its path, or of the nearest enclosing key
    the file has (a missing key: its section's), appended: `... (line 12)`. None when the path
    does not start with `prefix` (a rule file's label) or nothing of it is in `lines`."""
    path = problem.split(": ", 1)[0]
    if not path.startswith(prefix):
        return None
    path = path[len(prefix) :]
    while path:
        if path in lines:
            return f"{problem} (line {lines[path]})"
        cut = _LAST_STEP.search(path)
        if cut is None:
            return None
        path = path[: cut.start()]
    return None


def join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _describe(value: Any, path: str = "") -> str:
    """How a problem shows the value it got; only its kind under a secret-bearing key, so a
    secret of the wrong type (`password: 987654321012`) is never echoed."""
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if redaction.is_secret_path(path):
        kinds = {bool: "a boolean", int: "a number", float: "a number", str: "a string"}
        return f"{kinds.get(type(value), 'a value')} (not shown: a secret)"
    return repr(value)


def _is_struct(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, msgspec.Struct)


def _union_members(tp: Any) -> tuple[Any, ...] | None:
    origin = get_origin(tp)
    if origin is Union or origin is types.UnionType:
        return get_args(tp)
    return None


def convert(value: Any, tp: Any, path: str, problems: Problems) -> Any:
    """Return the converted value, or None after recording the problems under `path`."""
    if tp is Any:
        return value
    members = _union_members(tp)
    if members is not None:
        return _convert_union(value, members, path, problems)
    origin = get_origin(tp)
    if origin is Literal:
        allowed = get_args(tp)
        if value in allowed:
            return value
        problems.add(
            path, f"expected one of {', '.join(map(str, allowed))}, got {_describe(value, path)}"
        )
        return None
    if origin is list:
        (item_tp,) = get_args(tp) or (Any,)
        if not isinstance(value, list):
            problems.add(path, f"expected a list, got {_describe(value, path)}")
            return None
        return [convert(v, item_tp, join(path, i), problems) for i, v in enumerate(value)]
    if origin is dict:
        _key_tp, val_tp = get_args(tp) or (str, Any)
        if not isinstance(value, dict):
            problems.add(path, f"expected a mapping, got {_describe(value, path)}")
            return None
        return {str(k): convert(v, val_tp, join(path, str(k)), problems) for k, v in value.items()}
    if _is_struct(tp):
        return _convert_struct(value, tp, path, problems)
    if tp is date and isinstance(value, date):
        return value
    try:
        out = msgspec.convert(value, tp, strict=False, dec_hook=_dec_hook)
    except (msgspec.ValidationError, ValueError) as exc:
        msg = str(exc).split(" - at `", 1)[0]
        if (m := _EXPECTED.match(msg)) is not None:
            # in YAML's words, with the value given (`watch.interval_s: expected a number,
            # got 'fast'`); msgspec says `Expected `float`, got `str``
            want = _YAML_NAMES.get(m.group(1), m.group(1))
            msg = f"expected {want}, got {_describe(value, path)}"
        elif msg.startswith("Invalid") and isinstance(value, str):  # `Invalid ... date`
            msg = f"i{msg[1:]}, got {_describe(value, path)}"
        problems.add(path, msg)
        return None
    if isinstance(out, float) and not math.isfinite(out):
        # .nan/.inf pass every `> 0` check and then crash or stall whatever uses them
        problems.add(path, f"expected a finite number, got {_describe(value, path)}")
        return None
    return out


def _convert_union(value: Any, members: tuple[Any, ...], path: str, problems: Problems) -> Any:
    if value is None and type(None) in members:
        return None
    structs = [m for m in members if _is_struct(m)]
    if isinstance(value, dict) and structs:
        tagged = [s for s in structs if s.__struct_config__.tag is not None]
        if tagged:
            field = tagged[0].__struct_config__.tag_field
            by_tag = {s.__struct_config__.tag: s for s in tagged}
            tag = value.get(field)
            if not isinstance(tag, str | int) or tag not in by_tag:  # a list is unhashable
                choices = ", ".join(sorted(map(str, by_tag)))
                got = _describe(tag, path)
                problems.add(join(path, field), f"expected one of {choices}, got {got}")
                return None
            return _convert_struct(value, by_tag[tag], path, problems)
        return _convert_struct(value, structs[0], path, problems)
    scalars = [m for m in members if not _is_struct(m) and m is not type(None)]
    if len(scalars) == 1 and value is not None:  # `float | None`: the float's own problem
        return convert(value, scalars[0], path, problems)
    for m in scalars:
        trial = Problems()
        out = convert(value, m, path, trial)
        if not trial:
            return out
    names = [getattr(m, "__name__", str(m)) for m in members if m is not type(None)]
    problems.add(path, f"expected {' or '.join(names)}, got {_describe(value, path)}")
    return None


def _convert_struct(value: Any, tp: type[msgspec.Struct], path: str, problems: Problems) -> Any:
    if not isinstance(value, dict):
        problems.add(path, f"expected a mapping, got {_describe(value, path)}")
        return None
    info = msgspec.inspect.type_info(tp)
    assert isinstance(info, msgspec.inspect.StructType)
    cfg = tp.__struct_config__
    # a field the loader sets (`Config.path`) is no YAML key: `path:` in a file is unknown
    not_yaml: frozenset[str] = getattr(tp, "NOT_YAML", frozenset())
    by_name = {f.encode_name: f for f in info.fields if f.name not in not_yaml}
    hints = typing.get_type_hints(tp)
    known = set(by_name)
    if cfg.tag_field:
        known.add(cfg.tag_field)
    tag_field = cfg.tag_field
    if cfg.tag is not None and tag_field is not None and value.get(tag_field) != cfg.tag:
        problems.add(
            join(path, tag_field),
            f"expected one of {cfg.tag}, got {_describe(value.get(tag_field), path)}",
        )
        return None
    for key in value:
        if key not in known:
            problems.add(
                join(path, str(key)), f"unknown key (expected one of {', '.join(sorted(known))})"
            )
    # an unknown key does not stop the struct's own checks from running: report those too
    kwargs: dict[str, Any] = {}
    failed: set[str] = set()  # fields missing or of the wrong type (struct and YAML names)
    unset: set[str] = set()  # those of them whose stand-in is None (YAML names)
    for enc, f in by_name.items():
        before = len(problems)
        if enc in value:
            kwargs[f.name] = convert(value[enc], hints[f.name], join(path, enc), problems)
        elif f.required:
            problems.add(join(path, enc), "missing required key")
        if len(problems) > before:
            failed.update((f.name, enc))
            kwargs[f.name] = stand_in = _placeholder(f, hints[f.name])
            if stand_in is None:
                unset.add(enc)
    if failed:
        _check_partial(tp, kwargs, failed, unset, path, problems)
        return None
    try:
        obj = tp(**kwargs)
    except (TypeError, ValueError) as exc:
        problems.add(path, str(exc))
        return None
    _check(obj, path, problems)
    return obj


def _check(
    obj: Any,
    path: str,
    problems: Problems,
    skip: Collection[str] = (),
    named: re.Pattern[str] | None = None,
) -> None:
    """The struct's own `problems()` (ranges, fields that go together), under `path`, but
    those about a field in `skip` and those whose message `named` matches."""
    check = getattr(obj, "problems", None)
    if callable(check):
        for sub, msg in check():
            if _FIELD_OF.split(sub, 1)[0] in skip or (named is not None and named.search(msg)):
                continue
            problems.add(join(path, sub) if sub else path, msg)


def _placeholder(f: msgspec.inspect.Field, tp: Any) -> Any:
    """What stands in for a field that failed: its default, else an empty value of its type (so
    the struct's checks of its other fields can still run), else None."""
    if f.default is not msgspec.NODEFAULT:
        return f.default
    if f.default_factory is not msgspec.NODEFAULT:
        return f.default_factory()
    origin = get_origin(tp)
    if origin is Literal:
        return get_args(tp)[0]
    if origin in (list, dict):
        return origin()
    return tp() if tp in (str, int, float, bool) else None


def _check_partial(
    tp: type[msgspec.Struct],
    kwargs: dict[str, Any],
    failed: set[str],
    unset: set[str],
    path: str,
    problems: Problems,
) -> None:
    """A struct with bad fields still gets its own checks on the fields that are good, so one
    run of `check` shows every problem (`rules[2].band_pct: must be >= 0` beside
    `rules[2].direction: expected one of ...`). The bad fields hold placeholders, so what the
    checks say about them is dropped (their own problem is already reported), and a check that
    cannot run on a placeholder is passed over: it runs again once the field is fixed. A bad
    field that stands in as None looks unset to a check of fields that go together (`set above
    and/or below` for a `below` of the wrong type): a message naming it is about it, dropped."""
    named = None
    if unset:
        named = re.compile(r"\b(?:" + "|".join(map(re.escape, sorted(unset))) + r")\b")
    try:
        obj = tp(**kwargs)
        found = Problems()
        _check(obj, path, found, skip=failed, named=named)
    except Exception:  # the checks are written for valid values, not for placeholders
        return
    problems.extend(found)
