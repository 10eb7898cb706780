"""200 bodies: lenient where the provider may grow, strict where garbage would poison storage."""

from __future__ import annotations

import copy
from typing import Any

import msgspec
import pytest

from gex_alertd.config import SourceConfig
from gex_alertd.model import decode_flow_gex
from gex_alertd.sources.errors import MalformedPayload, TransientError
from gex_alertd.sources.flowgex import FlowGexClient
from tests.sources.conftest import API_KEY, ClientFactory
from tests.support.upstream import Reply, Upstream, flow_gex_body
from tests.support.wait import WAIT_S

AS_OF = "2026-03-02T15:04:05.250Z"


def body(**overrides: Any) -> dict[str, Any]:
    return flow_gex_body("SPY", as_of=AS_OF, strikes=6, **overrides)


async def test_request_shape(upstream: Upstream, make_client: ClientFactory) -> None:
    client = make_client(user_agent="gex-alertd/test")
    fetched = await client.fetch("SPY", "2026-05-15")
    await client.fetch("BRK/B")
    first, second = upstream.requests
    assert first.method == "GET"
    assert first.path == "/v1/flow/gex/SPY"
    assert first.query == {"expiry": "2026-05-15"}
    assert first.headers["X-Api-Key"] == API_KEY
    assert first.headers["Accept"] == "application/json"
    assert first.headers["User-Agent"] == "gex-alertd/test"
    assert second.raw_path == "/v1/flow/gex/BRK%2FB"  # one path segment
    assert second.query == {}
    assert fetched.snapshot.expiry == "2026-05-15"
    assert fetched.body_bytes > 1000 and fetched.latency_s > 0


async def test_default_user_agent_names_the_version(
    upstream: Upstream, make_client: ClientFactory
) -> None:
    from gex_alertd import __version__

    await make_client().fetch("SPY")
    assert upstream.requests[0].headers["User-Agent"] == f"gex-alertd/{__version__}"


async def test_unknown_fields_ignored_nullables_honoured(
    upstream: Upstream, make_client: ClientFactory
) -> None:
    raw = body(new_top_level={"nested": [1, 2]}, another="x")
    raw["strikes"][0]["call_oi_change"] = None
    raw["strikes"][0]["vanna"] = 12.5
    raw["strikes"][1]["put_oi_change"] = None
    raw["data_as_of"] = {"node": AS_OF, "oi_feed": None, "brand_new_feed": AS_OF}
    del raw["endpoint_version"]
    raw["expiry"] = None
    upstream.push(Reply.json(raw))
    snap = (await make_client().fetch("SPY")).snapshot
    assert snap.strikes[0].call_oi_change is None
    assert snap.strikes[1].put_oi_change is None
    assert snap.strikes[2].call_oi_change == raw["strikes"][2]["call_oi_change"]
    assert snap.endpoint_version is None and snap.expiry is None
    assert snap.data_as_of is not None and snap.data_as_of["oi_feed"] is None
    assert snap.as_of_ms == 1772463845250
    assert snap.live_net_gex == raw["live_net_gex"]  # served, never recomputed


@pytest.mark.parametrize(
    ("flip", "status", "expected"),
    [
        (495.0, "available", 495.0),
        (495.0, None, 495.0),  # status is optional: a served flip is usable
        (None, "no_boundary", None),
        (495.0, "sensitive_root", None),  # withheld: never use the number
        (495.0, "some_future_reason", None),  # unknown status = not available
        (None, "available", None),
    ],
)
async def test_flip_availability(
    upstream: Upstream,
    make_client: ClientFactory,
    flip: float | None,
    status: str | None,
    expected: float | None,
) -> None:
    raw = body(flip=flip, flip_status=status)
    if status is None:
        del raw["gamma_flip_status"]
    upstream.push(Reply.json(raw))
    snap = (await make_client().fetch("SPY")).snapshot
    assert snap.flip == expected


def _set_row(field: str, value: Any) -> dict[str, Any]:
    raw = body()
    raw["strikes"][3][field] = value
    return raw


def _json_with(field: str, literal: str) -> bytes:
    raw = body()
    raw[field] = "__PLACEHOLDER__"
    return msgspec.json.encode(raw).replace(b'"__PLACEHOLDER__"', literal.encode())


def _row_literal(field: str, literal: str) -> bytes:
    raw = _set_row(field, "__PLACEHOLDER__")
    return msgspec.json.encode(raw).replace(b'"__PLACEHOLDER__"', literal.encode())


BAD_BODIES: list[tuple[str, bytes | dict[str, Any], str]] = [
    ("not json", b"<html>502 Bad Gateway</html>", "malformed"),
    ("empty", b"", "malformed"),
    ("truncated", b'{"symbol": "SPY", "as_of": "2026-03-02T15:04:05Z", "underly', "truncated"),
    ("json array", b"[1, 2, 3]", "Expected `object`"),
    ("missing as_of", {k: v for k, v in body().items() if k != "as_of"}, "as_of"),
    ("price as string", body(underlying_price="500.1"), "underlying_price"),
    ("bad timestamp", flow_gex_body("SPY", as_of="yesterday"), "as_of"),
    ("strikes not a list", {**body(), "strikes": {"0": 1}}, "strikes"),
    ("row strike string", _set_row("strike", "five hundred"), "strike"),
    ("NaN literal", _json_with("underlying_price", "NaN"), "malformed"),
    ("huge number", _json_with("live_net_gex", "1e400"), "live_net_gex"),
    ("huge row number", _row_literal("call_gex", "-1e999"), "strikes[3]"),
    ("negative spot", body(spot=-5.0), "underlying_price"),
    ("zero spot", body(spot=0.0), "underlying_price"),
    ("negative flip", body(flip=-1.0), "live_gamma_flip"),
    ("other symbol", flow_gex_body("QQQ", as_of=AS_OF, strikes=2), "QQQ"),
    ("other expiry", body(expiry="2026-06-19"), "expiry"),
]


@pytest.mark.parametrize(("case", "payload", "names"), BAD_BODIES, ids=[c[0] for c in BAD_BODIES])
async def test_malformed_bodies_raise_naming_the_problem(
    upstream: Upstream,
    make_client: ClientFactory,
    case: str,
    payload: bytes | dict[str, Any],
    names: str,
) -> None:
    client = make_client()
    upstream.push(Reply(200, payload) if isinstance(payload, bytes) else Reply.json(payload))
    expiry = "2026-05-15" if case == "other expiry" else None
    with pytest.raises(MalformedPayload) as info:
        await client.fetch("SPY", expiry)
    err = info.value
    assert isinstance(err, TransientError) and err.retryable
    assert names in str(err)
    assert err.symbol == "SPY"
    # nothing from the garbage was kept: the next good snapshot is new data
    upstream.push(Reply.json(body(expiry=expiry)))
    assert (await client.fetch("SPY", expiry)).repeated is False


async def test_repeated_as_of_detected_per_symbol_and_expiry(
    upstream: Upstream, make_client: ClientFactory
) -> None:
    client = make_client()
    later = "2026-03-02T15:04:20.250Z"
    upstream.push(
        Reply.json(body()),
        Reply.json(body()),  # the provider's cache served the same snapshot again
        Reply.json(
            flow_gex_body("SPY", as_of="2026-03-02T15:04:05.250+00:00", strikes=6)
        ),  # same instant, other spelling
        Reply.json(flow_gex_body("SPY", as_of=later, strikes=6)),
        Reply.json(body()),  # a lagging cache node: older than the last seen, not new either
        symbol="SPY",
    )
    upstream.push(
        Reply.json(body(expiry="2026-05-15")), Reply.json(body(expiry="2026-05-15")), symbol="SPY"
    )
    upstream.push(Reply.json(flow_gex_body("QQQ", as_of=AS_OF, strikes=2)), symbol="QQQ")
    seen = [(await client.fetch("SPY")).repeated for _ in range(5)]
    assert seen == [False, True, True, False, True]
    # the same as_of under another expiry filter or symbol is its own series
    assert (await client.fetch("SPY", "2026-05-15")).repeated is False
    assert (await client.fetch("SPY", "2026-05-15")).repeated is True
    assert (await client.fetch("QQQ")).repeated is False
    # a repeat still returns the snapshot, so the caller can count and log it
    upstream.push(Reply.json(flow_gex_body("SPY", as_of=later, strikes=6)), symbol="SPY")
    again = await client.fetch("SPY")
    assert again.repeated and again.snapshot.as_of_ms == 1772463860250


async def test_timeout_is_transient(upstream: Upstream, make_client: ClientFactory) -> None:
    client = make_client(timeout_s=0.2)
    upstream.push(Reply.json(body(), delay_s=5))
    with pytest.raises(TransientError) as info:
        await client.fetch("SPY")
    assert type(info.value) is TransientError
    assert "0.2 s" in str(info.value)
    # the good snapshot that came too late was not kept
    upstream.push(Reply.json(body()))
    client.timeout_s = WAIT_S  # 0.2 s is a round trip on a busy machine
    assert (await client.fetch("SPY")).repeated is False


async def test_connection_dropped_mid_body_is_transient(
    upstream: Upstream, make_client: ClientFactory
) -> None:
    upstream.push(Reply.json(body(), truncate_at=40))
    with pytest.raises(TransientError) as info:
        await make_client().fetch("SPY")
    assert type(info.value) is TransientError
    assert "ConnectionLost" in str(info.value)


async def test_connection_refused_is_transient() -> None:
    up = Upstream()
    await up.start()
    url = up.url
    await up.stop()  # nothing listens there any more
    client = FlowGexClient(url, API_KEY, timeout_s=2)
    try:
        with pytest.raises(TransientError) as info:
            await client.fetch("SPY")
        assert "ConnectError" in str(info.value)
    finally:
        await client.close()


async def test_own_connections_are_reused_and_closed(upstream: Upstream) -> None:
    client = FlowGexClient(upstream.url, API_KEY)
    await client.fetch("SPY")
    http = client._http
    await client.fetch("QQQ")
    assert client._http is http and http is not None
    assert http.max_connections == 16
    (conn,) = http._idle  # one keep-alive connection served both
    await client.close()
    assert client._http is None and conn.closed
    # a closed client can be used again (new connections are made)
    await client.fetch("IWM")
    await client.close()


def test_from_config() -> None:
    cfg = SourceConfig(
        kind="flowgex",
        base_url="http://127.0.0.1:1",
        api_key="cfg-key-123",
        timeout_s=3,
        max_concurrency=4,
        requests_per_min=30,
    )
    client = FlowGexClient.from_config(cfg)
    assert client.base_url == "http://127.0.0.1:1"
    assert client.timeout_s == 3 and client.max_concurrency == 4
    assert client.limiter.interval == 2.0
    other = FlowGexClient.from_config(cfg, base_url="http://127.0.0.1:2/", api_key="other-key-9")
    assert other.base_url == "http://127.0.0.1:2"
    with pytest.raises(ValueError, match="api_key"):
        FlowGexClient.from_config(SourceConfig())


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="API key"):
        FlowGexClient("http://x", "")
    with pytest.raises(ValueError, match="requests_per_min"):
        FlowGexClient("http://x", "key-1234", requests_per_min=0)
    with pytest.raises(ValueError, match="max_concurrency"):
        FlowGexClient("http://x", "key-1234", max_concurrency=0)


def test_body_helper_is_a_deep_copyable_valid_snapshot() -> None:

    raw = copy.deepcopy(body())
    snap = decode_flow_gex(msgspec.json.encode(raw), symbol="SPY")
    assert len(snap.strikes) == 6 and snap.flip == 495.0


async def test_huge_but_finite_values_are_accepted(
    upstream: Upstream, make_client: ClientFactory
) -> None:
    # the finiteness fast path sums rows; an overflowing sum of finite values is still valid
    raw = body()
    raw["strikes"][0]["call_gex"] = 1.7e308
    raw["strikes"][1]["call_gex"] = 1.7e308
    upstream.push(Reply.json(raw))
    snap = (await make_client().fetch("SPY")).snapshot
    assert snap.strikes[0].call_gex == 1.7e308


async def test_oversized_body_is_refused_unread() -> None:
    async with Upstream() as up:
        up.push(Reply(200, b"[" + b"1," * 600_000 + b"1]"))
        client = FlowGexClient(up.url, "k-oversize", max_body_bytes=1_000_000)
        try:
            with pytest.raises(MalformedPayload, match="larger than 1000000 bytes"):
                await client.fetch("SPY")
            up.push(Reply.json(flow_gex_body("SPY")))
            assert (await client.fetch("SPY")).snapshot.symbol == "SPY"  # the next one is fine
        finally:
            await client.close()


async def test_unsupported_or_corrupt_encodings_are_named(
    upstream: Upstream, make_client: ClientFactory
) -> None:
    client = make_client()
    upstream.push(Reply(200, b"\x1b\x00\x00", headers={"Content-Encoding": "br"}))
    upstream.push(Reply(200, b"not gzip", headers={"Content-Encoding": "gzip"}))
    with pytest.raises(MalformedPayload, match="unsupported Content-Encoding 'br'") as info:
        await client.fetch("SPY")
    assert info.value.status == 200 and info.value.symbol == "SPY"
    with pytest.raises(TransientError, match="cannot decompress the body"):
        await client.fetch("SPY")
    assert (await client.fetch("SPY")).snapshot.symbol == "SPY"  # the next one is fine


@pytest.mark.parametrize("field", ["symbol", "as_of", "underlying_price", "live_net_gex"])
async def test_a_body_without_a_required_field_is_malformed(
    upstream: Upstream, make_client: ClientFactory, field: str
) -> None:
    """What the README says a body must hold: without it nothing can be stored or judged."""
    raw = body()
    del raw[field]
    upstream.push(Reply.json(raw))
    with pytest.raises(MalformedPayload) as info:
        await make_client().fetch("SPY")
    assert field in str(info.value)


async def test_absent_label_flip_status_and_strikes_mean_none_not_zero(
    upstream: Upstream, make_client: ClientFactory
) -> None:
    """The fields the README lists as may-be-absent: an absent flip is no flip (never 0), an
    absent label is no regime, absent rows an empty profile; the snapshot is still stored."""
    raw = body()
    for field in ("live_net_gex_label", "live_gamma_flip", "gamma_flip_status", "strikes"):
        del raw[field]
    upstream.push(Reply.json(raw))
    snap = (await make_client().fetch("SPY")).snapshot
    assert snap.flip is None and snap.live_net_gex_label is None and snap.strikes == []
    assert snap.live_net_gex == raw["live_net_gex"]
