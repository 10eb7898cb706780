"""oi_change on numpy columns equals the tuple-based rule it replaced (`reference_oi_change`),
output for output: fired alerts (summary, details, strikes) and state, for rows built in memory
(the live path) and for columns decoded straight from the stored block (replay)."""

from __future__ import annotations

from datetime import timedelta

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from gex_alertd import store
from gex_alertd.model import FlowGex
from gex_alertd.rules import oi_change
from gex_alertd.rules.columns import FIELDS, attach, from_block
from tests.rules import reference_oi_change as reference
from tests.rules.factory import T0, row, snap
from tests.rules.helpers import make_rule

GRID = (495.0, 497.5, 500.0, 502.5, 505.0)
oi = st.sampled_from([None, 0.0, 900.0, 1000.0, 1500.0, 3000.0, 1000.5])
change = st.sampled_from([None, 0.0, -600.0, 300.0, 500.0, -1000.0, 2500.0, 0.25])


@st.composite
def histories(draw: st.DrawFn) -> list[FlowGex]:
    t, out = T0, []
    for _ in range(draw(st.integers(1, 12))):
        t += timedelta(minutes=draw(st.sampled_from([1, 7, 300, 720])))  # crosses NY days
        grid = GRID if draw(st.integers(0, 3)) else draw(st.lists(st.sampled_from(GRID)))
        rows = [
            row(k, draw(oi), draw(oi), call_oi_change=draw(change), put_oi_change=draw(change))
            for k in grid
        ]
        spot = draw(st.sampled_from([496.0, 500.0, 504.0]))
        out.append(snap(at=t, spot=spot, strikes=rows))
    return out


@st.composite
def rules(draw: st.DrawFn) -> oi_change.OiChange:
    kw = {
        "min_contracts": draw(st.sampled_from([None, 1.0, 500.0, 1000.0])),
        "min_pct": draw(st.sampled_from([None, 10.0, 60.0])),
        "within_pct": draw(st.sampled_from([None, 0.6, 5.0])),
    }
    if kw["min_contracts"] is None and kw["min_pct"] is None:
        kw["min_pct"] = 10.0
    side = draw(st.sampled_from(["call", "put", "both"]))
    basis = draw(st.sampled_from(["poll", "day"]))
    given_kw = {k: v for k, v in kw.items() if v is not None}
    rule = make_rule(type="oi_change", name="oi", side=side, basis=basis, **given_kw)
    assert isinstance(rule, oi_change.OiChange)
    return rule


def _outputs(evaluate, rule, history, *, stored: bool) -> list[bytes]:
    state, prev, prev_view, out = None, None, None, []
    for s in history:
        view = None
        if stored:  # replay's path: no rows, the columns attached from the block
            s, block = store.decode_fields_columns(store.encode_fields(s), FIELDS)
            view = from_block(block)
            if prev is not None and prev_view is not None:
                attach(prev, prev_view)
            attach(s, view)
        state, fired = evaluate(rule, state, s, prev)
        out.append(msgspec.json.encode([state, fired]))
        prev, prev_view = s, view
    return out


@settings(max_examples=300, deadline=None)
@given(rules(), histories())
def test_numpy_columns_equal_the_tuple_reference(rule, history) -> None:
    want = _outputs(reference.evaluate, rule, history, stored=False)
    assert _outputs(oi_change.evaluate, rule, history, stored=False) == want
    assert _outputs(oi_change.evaluate, rule, history, stored=True) == want
