"""rules.columns: the per-snapshot column view, from the decoder's matrix, the rows or a block."""

from __future__ import annotations

import msgspec
import numpy as np

from gex_alertd import store
from gex_alertd.model import FlowGex, decode_flow_gex
from gex_alertd.rules.columns import FIELDS, attach, columns, detached, from_block
from gex_alertd.rules.engine import Engine, RuleSlot
from tests.test_replay import COLUMN_RULES, drifting


def test_the_view_of_a_decoded_snapshot_equals_the_view_of_its_rows() -> None:
    for s in drifting("SPY", 60, 3):
        decoded = decode_flow_gex(msgspec.json.encode(s))
        assert np.array_equal(columns(decoded).m, columns(s).m, equal_nan=True)
        _, block = store.decode_fields_columns(store.encode_fields(decoded), FIELDS)
        assert np.array_equal(from_block(block).m, columns(s).m, equal_nan=True)


def test_a_view_is_built_once_and_lives_with_its_snapshot() -> None:
    s = drifting("SPY", 1, 4)[0]
    view = columns(s)
    for other in drifting("QQQ", 200, 5):  # no memo to flood
        columns(other)
    assert columns(s) is view
    bare = msgspec.structs.replace(s, strikes=[])
    attach(bare, view)
    assert columns(bare) is view


def _run(history: list[FlowGex], keep: bool) -> tuple[list[bytes], list[bytes]]:
    """(every event, every state written), with the previous snapshot kept whole or detached."""
    engine = Engine(COLUMN_RULES)
    slots: dict[str, RuleSlot] = {}
    prev: FlowGex | None = None
    events: list[bytes] = []
    states: list[bytes] = []
    for s in history:
        outcome = engine.evaluate(slots, s, prev, None)
        slots = {**slots, **outcome.slots}
        events += [msgspec.json.encode(em.event) for em in outcome.emitted]
        states += [engine.encode_slot(slot) for slot in outcome.slots.values()]
        prev = s if keep else detached(s)
    return events, states


def test_a_detached_previous_snapshot_gives_the_same_outcomes() -> None:
    history = [decode_flow_gex(msgspec.json.encode(s)) for s in drifting("SPY", 300, 6)]
    want = _run(history, keep=True)
    assert _run(history, keep=False) == want
    assert sum(b'"rule":"oi-poll"' in e for e in want[0]) > 10
    s = history[-1]
    bare = detached(s)
    assert bare.strikes == [] and msgspec.structs.replace(bare, strikes=s.strikes) == s
    assert columns(bare) is columns(s)
