"""The README's config table is the typed config: every key it names exists (with the default
it states, and the bounds it states are the ones `check` enforces), and every key the loader
accepts is in it. A newcomer configures the daemon from that table alone; a key added to a
struct without a row, a default changed in one place only, or a row left behind after a rename
fails here (README "Configuration" and "Development": "add the key to the config table")."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml

from gex_alertd import config as config_mod
from gex_alertd.config import Config, ConfigError
from gex_alertd.notify.channel import HttpChannel
from gex_alertd.notify.registry import BY_NAME
from gex_alertd.rules.duration import Duration, parse_duration

ROOT = Path(__file__).resolve().parents[2]
REQUIRED = object()  # a field with no default


class Row(msgspec.Struct):
    keys: list[str]  # full dotted paths; channel rows as `channels.<type>.<key>`
    default: str
    meaning: str
    channel_types: list[str] | None = None  # the channel types a channel row is about


def _cells(line: str) -> list[str]:
    return [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]


def _table_lines() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Configuration\n", 1)[1].split("\n### Rules\n", 1)[0]
    lines = [ln for ln in section.splitlines() if ln.startswith("| ")]
    assert lines[0].startswith("| key | default | meaning"), lines[0]
    return [ln for ln in lines[1:] if not ln.startswith("|---")]


HTTP_TYPES = sorted(n for n, t in BY_NAME.items() if issubclass(t.config, HttpChannel))


def _names(cell: str) -> list[str]:
    """The key names of a key cell: backticked, `basic_auth: {...}` named by its key."""
    return [re.split(r"[:\s]", tok, maxsplit=1)[0] for tok in re.findall(r"`([^`]+)`", cell)]


def readme_rows() -> list[Row]:
    rows = []
    for line in _table_lines():
        key_cell, default, meaning = _cells(line)
        names = _names(key_cell)
        if key_cell.startswith("HTTP channels"):
            rows.append(
                Row([f"channels.*.{n}" for n in names], default, meaning, channel_types=HTTP_TYPES)
            )
        elif (m := re.match(r"(\w+):", key_cell)) is not None:
            kind = m.group(1)
            assert kind in BY_NAME, f"README config row for an unknown channel type: {key_cell}"
            rows.append(Row([f"channels.*.{n}" for n in names], default, meaning, [kind]))
        else:
            first = names[0].removesuffix("[]")
            parent = first.rpartition(".")[0]
            full = [first] + [f"{parent}.{n}" if parent else n for n in names[1:]]
            if first.startswith("channels.NAME."):
                full = [k.replace("channels.NAME.", "channels.*.") for k in full]
                rows.append(Row(full, default, meaning, channel_types=sorted(BY_NAME)))
            else:
                rows.append(Row(full, default, meaning))
    return rows


def _default(f: msgspec.inspect.Field) -> Any:
    if f.default is not msgspec.NODEFAULT:
        return f.default
    if f.default_factory is not msgspec.NODEFAULT:
        return f.default_factory()
    return REQUIRED


def _struct_of(tp: msgspec.inspect.Type) -> type[msgspec.Struct] | None:
    if isinstance(tp, msgspec.inspect.StructType):
        return tp.cls
    if isinstance(tp, msgspec.inspect.UnionType | msgspec.inspect.ListType):
        inner = tp.types if isinstance(tp, msgspec.inspect.UnionType) else (tp.item_type,)
        for t in inner:
            if (s := _struct_of(t)) is not None:
                return s
    return None


def struct_keys(tp: type[msgspec.Struct], prefix: str = "") -> dict[str, Any]:
    """Every YAML key under `tp` (dotted) -> its default, sub-structs (also in an optional or a
    list) walked; the channel and rule unions are not (their own rows and tables)."""
    info = msgspec.inspect.type_info(tp)
    assert isinstance(info, msgspec.inspect.StructType)
    out: dict[str, Any] = {}
    for f in info.fields:
        if f.name in getattr(tp, "NOT_YAML", ()) or f.encode_name in ("channels", "rules"):
            continue
        key = f"{prefix}{f.encode_name}"
        out[key] = _default(f)
        sub = _struct_of(f.type)
        if sub is not None:
            out.update(struct_keys(sub, key + "."))
    return out


def channel_keys(kind: str) -> dict[str, Any]:
    cls = BY_NAME[kind].config
    info = msgspec.inspect.type_info(cls)
    assert isinstance(info, msgspec.inspect.StructType)
    out = {f"channels.*.{f.encode_name}": _default(f) for f in info.fields}
    return {"channels.*.type": REQUIRED, **out}  # the tag, not a field


def documented() -> tuple[dict[str, Row], dict[str, dict[str, Row]]]:
    """(config key -> its row, channel type -> channel key -> its row)."""
    plain: dict[str, Row] = {}
    channels: dict[str, dict[str, Row]] = {kind: {} for kind in BY_NAME}
    for row in readme_rows():
        for key in row.keys:
            if row.channel_types is None:
                assert key not in plain, f"{key}: two rows"
                plain[key] = row
            else:
                for kind in row.channel_types:
                    channels[kind][key] = row
    return plain, channels


def test_the_table_is_found() -> None:
    plain, channels = documented()
    assert {"source.kind", "redis.url", "heartbeat.every"} <= set(plain)
    assert "channels.*.url" in channels["webhook"]


def test_every_key_in_the_table_exists() -> None:
    plain, channels = documented()
    schema = struct_keys(Config)
    schema["rules"] = []
    assert sorted(set(plain) - set(schema)) == [], "README rows for keys the config has not"
    for kind, rows in channels.items():
        extra = sorted(set(rows) - set(channel_keys(kind)))
        assert extra == [], f"README rows for keys a {kind} channel has not"


def test_every_key_the_config_accepts_is_in_the_table() -> None:
    """A key with no row of its own may be spelled out in its parent's row (`redis.sentinel`:
    `{master: name, nodes: ...}`, `watch.symbols`: `{symbol, expiry, interval_s, jitter_s}`)."""
    plain, channels = documented()
    missing = []
    schema = struct_keys(Config)
    for key in schema:
        if key in plain or any(k.startswith(key + ".") for k in schema):
            continue  # documented, or a section whose keys are
        parent, _, last = key.rpartition(".")
        row = plain.get(parent)
        if row is None or not re.search(rf"\b{re.escape(last)}\b", row.meaning):
            missing.append(key)
    for kind in BY_NAME:
        missing += [f"{k} ({kind})" for k in channel_keys(kind) if k not in channels[kind]]
    assert missing == [], "keys the config accepts with no README row"


def test_the_channel_types_row_names_the_registry() -> None:
    plain, _ = documented()
    assert "channels.*.type" not in plain
    (row,) = [r for r in readme_rows() if r.keys == ["channels.*.type"]]
    named = set(re.findall(r"`(\w+)`", row.meaning.split("(the registry")[0]))
    assert named == set(BY_NAME)


def _same(text: str, value: Any) -> bool:
    """Whether the README's default `text` (backticks removed) states `value`."""
    if text in ("—", "none", ""):
        return value is None or value is REQUIRED
    if isinstance(value, Duration):
        return parse_duration(text) == value
    if isinstance(value, bool):
        return yaml.safe_load(text) is value
    if isinstance(value, int | float):
        return float(text) == value
    if isinstance(value, list):
        return yaml.safe_load(text) == value
    return bool(text == value)


def _default_cases() -> list[tuple[str, str, Any]]:
    """(key, stated default, the code's default) for every row whose default cell is one value
    per key (`1` / `60`; `10`, `dead`); `— (slack: 1, discord: 0.5)` gives per-type values."""
    schema = struct_keys(Config)
    cases = []
    for row in readme_rows():
        cell = row.default
        per_type = re.fullmatch(r"(.*?)\s*\((\w+: [^)]*)\)", cell)
        if per_type is not None:
            (key,) = row.keys
            overrides = dict(p.split(": ") for p in per_type.group(2).split(", "))
            for kind in row.channel_types or ():
                stated = overrides.get(kind, per_type.group(1).strip("`"))
                cases.append((f"{key} ({kind})", stated, channel_keys(kind)[key]))
            continue
        if cell == "—":
            parts = ["—"] * len(row.keys)  # `redis.username` / `password`: neither has one
        elif len(row.keys) > 1:
            parts = [p.strip() for p in re.split(r" / |, ", cell)]
        else:
            parts = [cell] if cell else []
        if len(parts) != len(row.keys) or not all(
            re.fullmatch(r"`[^`]*`|—|none", p) for p in parts
        ):
            continue  # prose (`0` for url, 1 for cluster ...; port 587, STARTTLS)
        for key, part in zip(row.keys, parts, strict=True):
            stated = part.strip("`")
            if row.channel_types is None:
                cases.append((key, stated, _effective(key, schema.get(key, []))))
            else:
                for kind in row.channel_types:
                    cases.append((f"{key} ({kind})", stated, channel_keys(kind)[key]))
    return cases


def _effective(key: str, declared: Any) -> Any:
    """The value an empty config gets (`redis.url` is set after construction), else the
    field's declared default (under a section that is off by default: `heartbeat.*`)."""
    node: Any = config_mod.parse({})
    for part in key.split("."):
        node = getattr(node, part, None)
        if node is None:
            return declared
    return node


DEFAULTS = _default_cases()


def test_most_rows_state_a_checkable_default() -> None:
    """The parse above does not skip rows wholesale (a format change would pass every case)."""
    assert len({k.split(" ")[0] for k, _, _ in DEFAULTS}) >= 50


@pytest.mark.parametrize(("key", "stated", "value"), DEFAULTS, ids=[c[0] for c in DEFAULTS])
def test_the_stated_default_is_the_codes(key: str, stated: str, value: Any) -> None:
    assert _same(stated, value), f"README says {key} defaults to {stated!r}; the code: {value!r}"


def _ranges() -> list[tuple[str, float, float]]:
    """Rows stating a numeric range in their meaning: `(1-1024)`, `(1 to 4000 ms, ...)`."""
    plain, _ = documented()
    out = []
    for key, row in plain.items():
        if len(row.keys) != 1:
            continue
        m = re.search(r"\((\d+)(?:-| to )(\d+)\b", row.meaning)
        if m is not None:
            out.append((key, float(m.group(1)), float(m.group(2))))
    return out


RANGES = _ranges()


def _is_int(key: str) -> bool:
    """Whether the field at `key` holds an integer (also `int | None`)."""
    tp: Any = Config
    for part in key.split("."):
        info = msgspec.inspect.type_info(tp)
        assert isinstance(info, msgspec.inspect.StructType)
        field = next(f for f in info.fields if f.encode_name == part)
        tp = _struct_of(field.type)
    kinds = field.type.types if isinstance(field.type, msgspec.inspect.UnionType) else [field.type]
    return any(isinstance(t, msgspec.inspect.IntType) for t in kinds)


def _tree(key: str, value: Any) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    node = tree
    *parents, last = key.split(".")
    for p in parents:
        node = node.setdefault(p, {})
    node[last] = value
    return tree


def _problems(tree: dict[str, Any]) -> list[str]:
    try:
        config_mod.parse(tree)
    except ConfigError as exc:
        return exc.problems
    return []


def test_ranges_are_found() -> None:
    assert {"source.max_concurrency", "redis.wait_timeout_ms"} <= {k for k, _, _ in RANGES}


@pytest.mark.parametrize(("key", "low", "high"), RANGES, ids=[r[0] for r in RANGES])
def test_the_stated_range_is_what_check_enforces(key: str, low: float, high: float) -> None:
    step = 1 if _is_int(key) else 0.001
    for inside in (low, high):
        assert _problems(_tree(key, type(step)(inside))) == [], (key, inside)
    for outside in (low - step, high + step):
        problems = _problems(_tree(key, type(step)(outside)))
        assert any(p.startswith(f"{key}: ") for p in problems), (key, outside, problems)


def _choices() -> list[tuple[str, tuple[str, ...], Row]]:
    """(key, the values the code accepts, its row) for every key with a fixed set of values."""
    plain, channels = documented()
    out = []

    def literal(tp: msgspec.inspect.Type) -> tuple[str, ...] | None:
        kinds = tp.types if isinstance(tp, msgspec.inspect.UnionType) else (tp,)
        for t in kinds:
            if isinstance(t, msgspec.inspect.LiteralType):
                return tuple(str(v) for v in t.values)
        return None

    def walk(tp: type[msgspec.Struct], prefix: str, rows: dict[str, Row]) -> None:
        info = msgspec.inspect.type_info(tp)
        assert isinstance(info, msgspec.inspect.StructType)
        for f in info.fields:
            key = f"{prefix}{f.encode_name}"
            if (values := literal(f.type)) is not None and key in rows:
                out.append((key, values, rows[key]))
            if (sub := _struct_of(f.type)) is not None and f.encode_name not in ("rules",):
                walk(sub, key + ".", rows)

    walk(Config, "", plain)
    for kind in BY_NAME:
        walk(BY_NAME[kind].config, "channels.*.", channels[kind])
    return out


CHOICES = _choices()


def test_choices_are_found() -> None:
    assert {"source.kind", "ops.log_level", "channels.*.color"} <= {k for k, _, _ in CHOICES}


@pytest.mark.parametrize(("key", "values", "row"), CHOICES, ids=[c[0] for c in CHOICES])
def test_every_accepted_value_is_told(key: str, values: tuple[str, ...], row: Row) -> None:
    """A key with a fixed set of values names each of them in its row (`ops.log_level`)."""
    told = set(re.findall(r"`([^`]+)`", row.default + " " + row.meaning))
    told |= {w for t in list(told) for w in re.split(r"[\s|,/]+", t)}
    assert sorted(set(values) - told) == [], f"{key}: values the README does not name"
