"""Fuzzing (hypothesis): random mutations of valid payloads and of valid configs.

Payloads go through exactly what the daemon does with a 200 body (FlowGexClient's decode and
validation, then the stored encoding and every rule type): a mutation is either refused with
MalformedPayload, or accepted and handled; any other exception is a bug. Configs go through
the loader: a valid Config or a ConfigError listing problems with their paths; never anything
else, and `gex-alertd check` on a bad one exits 2 with the messages and no traceback.
"""

from __future__ import annotations

import copy
import math
import random
import subprocess
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gex_alertd import config as config_mod
from gex_alertd import store
from gex_alertd.codec import decode_columns
from gex_alertd.config import ConfigError
from gex_alertd.rules.engine import Engine
from gex_alertd.sources.errors import MalformedPayload
from gex_alertd.sources.flowgex import FlowGexClient
from tests.reliability.support import GEX_ALERTD, SOAK, clean_env
from tests.support.upstream import flow_gex_body

EXAMPLES = 1000 if SOAK else 150
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=not SOAK,  # the default run is the same every time; soak explores
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# --- payloads ------------------------------------------------------------------------------

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(["", "NaN", "Infinity", "2026-03-02T15:00:00Z", "available", "positive"]),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def _paths(tree: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(tree, dict):
        for k, v in tree.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            out += _paths(v, (*prefix, i))
    return out


def _mutate(tree: Any, path: tuple[Any, ...], op: str, value: Any) -> Any:
    if not path:
        return value if op == "set" else tree
    parent = tree
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if op == "delete":
        del parent[last]
    elif op == "set":
        parent[last] = value
    elif op == "duplicate" and isinstance(parent, list):
        parent.insert(last, copy.deepcopy(parent[last]))
    elif op == "scale" and isinstance(parent[last], int | float) and value is not None:
        parent[last] = parent[last] * (value if isinstance(value, int | float) else -1)
    return tree


@st.composite
def mutated_bodies(draw: st.DrawFn) -> bytes:
    tree = flow_gex_body("SPY", strikes=draw(st.integers(0, 30)), as_of="2026-03-02T15:00:00Z")
    for _ in range(draw(st.integers(1, 4))):
        paths = _paths(tree)
        path = draw(st.sampled_from(paths))
        op = draw(st.sampled_from(["delete", "set", "duplicate", "scale"]))
        try:
            tree = _mutate(tree, path, op, draw(json_values))
        except (KeyError, IndexError, TypeError):
            pass
    try:
        body = msgspec.json.encode(tree)
    except (TypeError, OverflowError):
        body = b"{}"
    match draw(st.sampled_from(["as_is", "truncate", "splice", "overflow"])):
        case "truncate":
            body = body[: draw(st.integers(0, len(body)))]
        case "splice":
            at = draw(st.integers(0, len(body)))
            body = body[:at] + draw(st.binary(max_size=8)) + body[at:]
        case "overflow":
            body = body.replace(b"500.0", b"1e999", 1)
    return body


RULES: list[dict[str, Any]] = [
    {"name": "flip", "type": "flip_cross", "symbols": "*", "direction": "any", "band_pct": 0.0,
     "channels": ["c"]},
    {"name": "sign", "type": "net_gex_sign", "symbols": "*", "direction": "any",
     "channels": ["c"]},
    {"name": "level", "type": "threshold", "symbols": "*", "field": "flip_distance_pct",
     "above": 0.1, "channels": ["c"]},
    {"name": "oi-poll", "type": "oi_change", "symbols": "*", "side": "both", "basis": "poll",
     "min_contracts": 1, "channels": ["c"]},
    {"name": "oi-day", "type": "oi_change", "symbols": "*", "side": "both", "basis": "day",
     "min_pct": 1, "channels": ["c"]},
]  # fmt: skip
_CFG = config_mod.parse({"channels": {"c": {"type": "console"}}, "rules": RULES})
_ENGINE = Engine(list(_CFG.rules))
_CLIENT = FlowGexClient("http://127.0.0.1:9", "fuzz-key")
_BASE = _CLIENT._decoded(
    "SPY", None, msgspec.json.encode(flow_gex_body("SPY", as_of="2026-03-02T14:59:00Z")), 200, 0
).snapshot


@FUZZ
@given(body=mutated_bodies())
# found by the soak run: invalid UTF-8 inside a string escaped as UnicodeDecodeError
@example(body=msgspec.json.encode(flow_gex_body("SPY")).replace(b'"SPY"', b'"\x80SPY"', 1))
def test_mutated_payloads_are_refused_cleanly_or_handled(body: bytes) -> None:
    _CLIENT._last_as_of.clear()
    try:
        fetched = _CLIENT._decoded("SPY", None, body, 200, 0.0)
    except MalformedPayload as exc:
        assert "SPY" in str(exc) and "payload" in str(exc)
        return
    snap = fetched.snapshot
    # accepted: it must be storable, read back exactly, and every rule must cope with it
    fields = store.encode_fields(snap)
    cols = decode_columns(fields[store.F_STRIKES])
    assert cols.rows() == list(snap.strikes)
    first = _ENGINE.evaluate({}, _BASE, None, None)
    _ENGINE.evaluate(first.slots, snap, _BASE, None)
    assert math.isfinite(snap.underlying_price) and snap.underlying_price > 0


# --- configs -------------------------------------------------------------------------------

VALID: dict[str, Any] = {
    "source": {"kind": "simulator", "timeout_s": 10, "max_concurrency": 16,
               "simulator": {"speed": 1, "cache_s": 1}},
    "redis": {"url": "redis://127.0.0.1:6379/0", "retention": "7d"},
    "watch": {"interval_s": 15, "jitter_s": 1, "market_hours": "nyse",
              "symbols": ["SPY", {"symbol": "SPX", "expiry": "2026-05-15", "interval_s": 30}]},
    "channels": {"ops": {"type": "webhook", "url": "https://example.com/hook",
                         "secret": "whsec_c2VjcmV0LWtleQ=="},
                 "tty": {"type": "console"},
                 "mail": {"type": "email", "host": "smtp.example.com", "from": "a@example.com",
                          "to": ["b@example.com"]}},
    "rules": [*RULES[:2], dict(RULES[2], channels=["ops", "tty"], cooldown="10m",
                               severity="critical",
                               active_hours={"start": "09:30", "end": "16:00"})],
    "outbox": {"claim_idle": "30s"},
    "ops": {"listen": "127.0.0.1:9108", "operator_channels": ["ops"]},
}  # fmt: skip
for _rule in VALID["rules"]:
    _rule["channels"] = [c for c in _rule["channels"] if c != "c"] or ["tty"]


@st.composite
def mutated_configs(draw: st.DrawFn) -> Any:
    tree: Any = copy.deepcopy(VALID)
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(_paths(tree)))
        op = draw(st.sampled_from(["delete", "set", "set", "duplicate", "scale"]))
        value = draw(st.one_of(json_values, st.sampled_from(["${NOPE}", "-5", "0s", "zz"])))
        try:
            tree = _mutate(tree, path, op, value)
        except (KeyError, IndexError, TypeError):
            pass
    return tree


def test_valid_config_is_valid() -> None:
    config_mod.parse(copy.deepcopy(VALID))


@FUZZ
@given(tree=mutated_configs())
def test_mutated_configs_load_or_list_their_problems(tree: Any) -> None:
    try:
        config_mod.parse(tree)
    except ConfigError as exc:
        assert exc.problems, "a ConfigError with no problem listed"
        assert all(isinstance(p, str) and p for p in exc.problems)


@FUZZ
@given(text=st.text(max_size=200), seed=st.integers(0, 2**16))
def test_garbage_yaml_is_a_config_error(tmp_path_factory: Any, text: str, seed: int) -> None:
    path = tmp_path_factory.mktemp("yaml") / "config.yaml"
    rng = random.Random(seed)
    good = yaml.safe_dump(VALID)
    at = rng.randrange(len(good))
    path.write_text(good[:at] + text + good[at + rng.randrange(0, 40) :])
    try:
        config_mod.load(path)
    except ConfigError as exc:
        assert exc.problems


def _bad_configs() -> list[str]:
    """A few mutations that are certainly invalid, plus broken YAML, seeded."""
    rng = random.Random(8)
    out = ["source: [unclosed\n", "rules: 5\nwatch: {interval_s: -1}\n"]
    while len(out) < 6:
        tree = copy.deepcopy(VALID)
        path = rng.choice([p for p in _paths(tree) if p])
        tree = _mutate(tree, path, "set", rng.choice([{"x": 1}, [], "zz", -3, None]))
        try:
            config_mod.parse(copy.deepcopy(tree))
        except ConfigError:
            out.append(yaml.safe_dump(tree))
    return out


@pytest.mark.parametrize("text", _bad_configs())
def test_check_on_a_bad_config_exits_2_without_traceback(tmp_path: Path, text: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    proc = subprocess.run(
        [GEX_ALERTD, "check", "--config", str(path)],
        capture_output=True, text=True, timeout=60, env=clean_env(),
    )  # fmt: skip
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, output
    assert "Traceback" not in output
    assert str(path) in output or "config" in output.lower()
