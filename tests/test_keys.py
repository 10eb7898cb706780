"""Every Redis key name lives in `gex_alertd.keys`; no other module spells one."""

from __future__ import annotations

import re
from pathlib import Path

from gex_alertd import keys

ROOT = Path(__file__).resolve().parents[1]
_KEY_LITERAL = re.compile(r"""(?<![\w-])f?["']gex:""")


def test_no_module_but_keys_spells_a_key_name() -> None:
    offenders = []
    for folder in ("daemon", "rules"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path.name == "keys.py" and path.parent.name == "daemon":
                continue
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if _KEY_LITERAL.search(line):
                    offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert offenders == []


def test_per_symbol_keys_share_the_symbols_hash_tag() -> None:
    names = [
        keys.snap("spy"),
        keys.state("SPY", "2026-12-18"),
        keys.cooldown("SPY", "r", None),
        keys.alert_dedup("SPY", "a1"),
    ]
    assert names == [
        "gex:{SPY}:snap",
        "gex:{SPY}:state:2026-12-18",
        "gex:{SPY}:cooldown:r",
        "gex:{SPY}:alert:a1",
    ]


def test_delivery_keys_are_the_documented_ones() -> None:
    assert (keys.ALERTS, keys.DEAD, keys.MEMBERS, keys.SILENCES) == (
        "gex:alerts",
        "gex:dead",
        "gex:members",
        "gex:silences",
    )
    assert keys.notify_group("ops") == "notify:ops"
    assert keys.notify_group("ops").startswith(keys.NOTIFY_GROUP_PREFIX)
    assert keys.sent_marker("a1", "ops") == "gex:sent:a1:ops"
    assert keys.attempts("a1", "ops") == "gex:retry:a1:ops"
    assert keys.SILENCED == "gex:silenced"
