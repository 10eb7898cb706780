"""docs/operations.md "Redis keys" lists every key `daemon/keys.py` builds, and nothing else:
an operator reading Redis (or sizing it, or writing an ACL) finds each key there. Every name
keys.py makes from sample arguments matches one row's template, and every row matches a name
keys.py makes (design.md "Redis layout", contract)."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from gex_alertd import keys

ROOT = Path(__file__).resolve().parents[1]
SAMPLE: dict[str, list[str | None]] = {
    "symbol": ["SPY", keys.OPS_SYMBOL],
    "expiry": [None, "2026-05-15"],
    "day": ["2026-05-11"],
    "rule": ["spy-flip"],
    "alert_id": ["al_0123abcd"],
    "channel": ["ops"],
    "legacy_entry_id": ["1715436000000-0"],
}
# names that are no Redis key: match patterns, a group-name prefix, the pseudo-symbol
NOT_KEYS = {"SNAP_PATTERN", "OUTBOX_PATTERN", "NOTIFY_GROUP_PREFIX", "OPS_SYMBOL"}
NOT_BUILDERS = {"symbol_of_outbox", "notify_group", "symbol_key"}


def built() -> set[str]:
    out = {
        v for k, v in vars(keys).items() if k.isupper() and isinstance(v, str) and k not in NOT_KEYS
    }
    for name, fn in vars(keys).items():
        if not inspect.isfunction(fn) or name.startswith("_") or name in NOT_BUILDERS:
            continue
        params = list(inspect.signature(fn).parameters)
        combos: list[dict[str, str | None]] = [{}]
        for p in params:
            combos = [{**c, p: v} for c in combos for v in SAMPLE[p]]
        out |= {fn(**c) for c in combos}
    return out


def documented() -> list[tuple[str, re.Pattern[str]]]:
    text = (ROOT / "docs" / "operations.md").read_text()
    section = text.split("\n## Redis keys\n", 1)[1].split("\n## ", 1)[0]
    rows = []
    for template in re.findall(r"^\| `([^`]+)` \|", section, re.M):
        rx = re.escape(template)
        # a per-symbol key is also made for the pseudo-symbol `*` (a source-wide event's)
        rx = rx.replace(r"\{SYM\}", r"\{(?:[A-Z0-9.^-]+|\*)\}")
        rx = re.sub(r"\\\[(.*?)\\\]", r"(?:\1)?", rx)  # `[:<expiry>]`: optional
        rx = re.sub(r"<[^>]+>", r"[^:]+", rx)
        rows.append((template, re.compile(rx)))
    return rows


def test_the_table_is_found() -> None:
    assert len(documented()) >= 20


def test_every_key_keys_py_builds_is_documented() -> None:
    rows = documented()
    undocumented = sorted(k for k in built() if not any(rx.fullmatch(k) for _, rx in rows))
    assert undocumented == [], "keys with no row in docs/operations.md 'Redis keys'"


def test_every_documented_key_is_one_keys_py_builds() -> None:
    names = built()
    stale = [t for t, rx in documented() if not any(rx.fullmatch(k) for k in names)]
    assert stale == [], "rows in docs/operations.md 'Redis keys' for keys nothing builds"
