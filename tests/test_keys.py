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
    assert (keys.DEAD, keys.MEMBERS, keys.SILENCES, keys.SILENCED) == (
        "gex:dead",
        "gex:members",
        "gex:silences",
        "gex:silenced",
    )
    assert keys.notify_group("ops") == "notify:ops"
    assert keys.notify_group("ops").startswith(keys.NOTIFY_GROUP_PREFIX)
    assert keys.LEGACY_ALERTS == "gex:alerts"  # read by `migrate` only


def test_the_outbox_and_its_bookkeeping_share_the_symbols_slot() -> None:
    """Everything a commit or a delivery touches for one alert is in `{SYM}`: one slot."""
    assert keys.outbox("spy") == "gex:{SPY}:alerts"
    assert keys.sent_marker("SPY", "a1", "ops") == "gex:{SPY}:sent:a1:ops"
    assert keys.attempts("SPY", "a1", "ops") == "gex:{SPY}:retry:a1:ops"
    assert keys.symbol_of_outbox(keys.outbox("SPY")) == "SPY"
    assert keys.symbol_of_outbox(keys.snap("SPY")) is None
    # events about no one symbol: the operator outbox, with its heartbeat dedup beside it
    ops = keys.outbox(keys.OPS_SYMBOL)
    assert ops == "gex:{*}:alerts" and keys.outbox("") == ops
    assert keys.heartbeat_sent("h1") == "gex:{*}:heartbeat:h1"
    assert keys.symbol_of_outbox(ops) == "*"
