"""Property-based hostile payloads (extends tests/reliability/test_fuzz.py's mutations): strike
lists with any values in any order, symbols in any script, as_of anywhere from year 1 to 9999,
bodies gzip-compressed on the wire. Whatever arrives, the client either refuses it with
MalformedPayload naming the symbol, or hands over a snapshot that keeps every promise the
storage and the rules rely on: strikes positive and strictly increasing, the symbol the one
asked for (ASCII case aside), the as_of inside the window, and storable to the byte."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any

import msgspec
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gex_alertd import store
from gex_alertd.asof_window import AsOfWindow
from gex_alertd.codec import decode_columns
from gex_alertd.model import as_ms, ascii_upper
from gex_alertd.sources.errors import MalformedPayload
from gex_alertd.sources.flowgex import FlowGexClient
from tests.hostile.upstream import gzipped
from tests.reliability.support import SOAK
from tests.support.upstream import Reply, Upstream, flow_gex_body

NOW = datetime(2026, 11, 2, 15, 0, tzinfo=UTC)
WINDOW = AsOfWindow(max_future_s=300, max_age_s=7 * 86400)
FUZZ = settings(
    max_examples=1000 if SOAK else 200,
    deadline=None,
    derandomize=not SOAK,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

_client = FlowGexClient(
    "http://127.0.0.1:9", "fuzz-key", as_of_window=WINDOW, wall_clock=NOW.timestamp
)

strike_values = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.sampled_from([0.0, -0.0, -1.0, 1e-300, 5e-324, 1.7e308, 500.0, 505.0]),
    st.integers(-(2**53), 2**53),
)
symbols = st.one_of(
    st.sampled_from(["SPY", "spy", "Spy", "SPY ", "SPY\x00", "\u0131wm", "SP\u0130", "ſpy", ""]),
    st.text(max_size=6),
)
instants = st.one_of(
    st.datetimes(
        min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
    ),
    st.integers(-10 * 86400, 10 * 86400).map(
        lambda d: datetime.fromtimestamp(NOW.timestamp() + d, UTC)
    ),
)


@st.composite
def hostile_bodies(draw: st.DrawFn) -> tuple[str, bytes]:
    requested = draw(st.sampled_from(["SPY", "IWM"]))
    body: dict[str, Any] = flow_gex_body(requested, strikes=draw(st.integers(0, 12)))
    rows = body["strikes"]
    for row in rows:
        if draw(st.booleans()):
            row["strike"] = draw(strike_values)
    if rows and draw(st.booleans()):
        rows.insert(draw(st.integers(0, len(rows))), dict(draw(st.sampled_from(rows))))
    if draw(st.booleans()):
        rows.reverse()
    if draw(st.booleans()):
        body["symbol"] = draw(symbols)
    body["as_of"] = draw(instants).isoformat().replace("+00:00", "Z")
    return requested, msgspec.json.encode(body)


def _check(requested: str, body: bytes) -> None:
    _client._last_as_of.clear()
    try:
        snap = _client._decoded(requested, None, body, 200, 0.0).snapshot
    except MalformedPayload as exc:
        assert requested in str(exc) and str(exc).strip()
        return
    strikes = [r.strike for r in snap.strikes]
    assert all(k > 0 and math.isfinite(k) for k in strikes)
    assert all(a < b for a, b in pairwise(strikes))
    assert snap.symbol.isascii() and ascii_upper(snap.symbol) == requested
    assert WINDOW.check(snap.as_of_ms, as_ms(NOW)) is None
    fields = store.encode_fields(snap)
    assert decode_columns(fields[store.F_STRIKES]).rows() == list(snap.strikes)


@FUZZ
@given(case=hostile_bodies())
@example(
    case=("IWM", msgspec.json.encode({**flow_gex_body("IWM", as_of=NOW), "symbol": "\u0131wm"}))
)
@example(case=("SPY", msgspec.json.encode(flow_gex_body("SPY", as_of="2099-01-01T00:00:00Z"))))
def test_hostile_payloads_are_refused_or_keep_every_promise(case: tuple[str, bytes]) -> None:
    _check(*case)


@settings(max_examples=25, deadline=None, derandomize=True)
@given(case=hostile_bodies())
async def test_hostile_payloads_gzipped_over_http(case: tuple[str, bytes]) -> None:
    requested, body = case
    async with Upstream() as up:
        up.push(gzipped(Reply(200, body)))
        client = FlowGexClient(up.url, "fuzz-key", as_of_window=WINDOW, wall_clock=NOW.timestamp)
        try:
            try:
                fetched = await client.fetch(requested)
            except MalformedPayload as exc:
                assert requested in str(exc)
                return
        finally:
            await client.close()
    # what arrived over the wire, inflated, is what the in-process check accepts
    _check(requested, body)
    assert fetched.snapshot.symbol.isascii()
