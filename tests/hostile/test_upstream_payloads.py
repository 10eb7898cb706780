"""Hostile bodies from a real aiohttp upstream (issue 17 items 2 and 11): decompression bombs,
bad strikes, look-alike symbols. Each reply goes through the daemon's own FlowGexClient."""

from __future__ import annotations

import tracemalloc
from collections.abc import AsyncIterator, MutableMapping
from typing import Any

import msgspec
import pytest
from aiohttp import web
from structlog.testing import capture_logs

from gex_alertd.model import MAX_STRIKES, strike_matrix, strike_rows
from gex_alertd.notify.base import Ok
from gex_alertd.notify.http import HttpPoster
from gex_alertd.sources.errors import MalformedPayload, TransientError
from gex_alertd.sources.flowgex import FlowGexClient
from tests.hostile.upstream import (
    bad_strikes,
    gzip_bomb,
    gzipped,
    lookalike_symbol,
    recent,
    snapshot,
)
from tests.support.upstream import Reply, Upstream, flow_gex_body

KEY = "fgx_hostile_payload_key"
LIMIT = 1 << 20


@pytest.fixture
async def up() -> AsyncIterator[Upstream]:
    async with Upstream() as server:
        yield server


@pytest.fixture
async def client(up: Upstream) -> AsyncIterator[FlowGexClient]:
    c = FlowGexClient(up.url, KEY, requests_per_min=60_000, timeout_s=30, max_body_bytes=LIMIT)
    yield c
    await c.close()


# --- item 2: a gzip bomb passes max_body_bytes -----------------------------------------------


async def test_gzip_bomb_is_refused_at_the_limit_of_decompressed_bytes(
    up: Upstream, client: FlowGexClient
) -> None:
    bomb = gzip_bomb("SPY", expands_to=64 << 20)
    assert len(bomb.body_bytes()) < LIMIT  # the announced length passes the limit
    up.push(bomb, symbol="SPY")
    tracemalloc.start()
    try:
        with pytest.raises(MalformedPayload, match=f"larger than {LIMIT} bytes"):
            await client.fetch("SPY")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # it stopped reading at the limit: what it held stayed near it, not near 64 MB
    assert peak < 8 * LIMIT, f"peak {peak} bytes while refusing a 64 MB bomb"
    # the next, honest reply is served as usual
    up.push(snapshot("SPY"), symbol="SPY")
    assert (await client.fetch("SPY")).snapshot.symbol == "SPY"


async def test_gzipped_snapshot_within_the_limit_is_accepted(
    up: Upstream, client: FlowGexClient
) -> None:
    up.push(gzipped(snapshot("SPY", strikes=40)), symbol="SPY")
    fetched = await client.fetch("SPY")
    assert len(fetched.snapshot.strikes) == 40


async def test_webhook_receiver_answering_with_a_gzip_bomb_costs_no_memory() -> None:
    bomb = gzip_bomb("SPY", expands_to=64 << 20)

    async def receive(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(
            body=bomb.body_bytes(), headers={"Content-Encoding": "gzip"}, status=200
        )

    app = web.Application()
    app.router.add_post("/hook", receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    poster = HttpPoster(timeout_s=30)
    tracemalloc.start()
    try:
        outcome = await poster.post(f"http://127.0.0.1:{port}/hook", b"{}", {})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        await poster.aclose()
        await runner.cleanup()
    assert isinstance(outcome, Ok)
    assert peak < 8 << 20, f"peak {peak} bytes reading a receiver's 64 MB answer"


# --- item 11: strikes and symbols -----------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        ("negative", "strike must be positive, got -5.0"),
        ("zero", "strike must be positive, got 0.0"),
        ("duplicate", "appears more than once"),
    ],
)
async def test_invalid_strikes_refuse_the_payload(
    up: Upstream, client: FlowGexClient, kind: str, words: str
) -> None:
    up.push(bad_strikes("SPY", kind), symbol="SPY")
    with pytest.raises(MalformedPayload, match=words) as info:
        await client.fetch("SPY")
    assert "SPY" in str(info.value)


async def test_unsorted_strikes_are_sorted_with_a_log_line(
    up: Upstream, client: FlowGexClient
) -> None:
    up.push(bad_strikes("SPY", "unsorted"), symbol="SPY")
    with capture_logs() as logs:
        snap = (await client.fetch("SPY")).snapshot
    strikes = [r.strike for r in snap.strikes]
    assert strikes == sorted(strikes) and len(strikes) == 8
    # the rows moved with their strikes: the lowest strike keeps its own OI
    assert snap.strikes[0].strike == 480.0 and snap.strikes[0].call_volume == 0
    (line,) = [e for e in logs if e["event"] == "payload normalised"]
    assert line["symbol"] == "SPY" and "sorted by strike" in line["note"]


async def test_unsorted_strikes_are_logged_once_until_they_come_in_order_again(
    up: Upstream, client: FlowGexClient
) -> None:
    # a line per poll would be thousands a minute at 200 symbols polled fast
    seconds_ago = iter(range(60, 0, -1))  # a fresh as_of for each reply

    def unsorted() -> Reply:
        return bad_strikes("SPY", "unsorted", as_of=recent(next(seconds_ago)))

    def lines(logs: list[MutableMapping[str, Any]]) -> int:
        return sum(e["event"] == "payload normalised" for e in logs)

    with capture_logs() as logs:
        for _ in range(3):
            up.push(unsorted(), symbol="SPY")
            await client.fetch("SPY")
    assert lines(logs) == 1
    with capture_logs() as logs:
        up.push(snapshot("SPY", as_of=recent(next(seconds_ago))), symbol="SPY")
        await client.fetch("SPY")  # in order: the next unsorted one is news again
        up.push(unsorted(), symbol="SPY")
        snap = (await client.fetch("SPY")).snapshot
    assert lines(logs) == 1
    assert [r.strike for r in snap.strikes] == sorted(r.strike for r in snap.strikes)


def nested(depth: int) -> bytes:
    return b"[" * depth + b"1" + b"]" * depth


@pytest.mark.parametrize("status", [200, 500])
async def test_json_nested_deeper_than_the_parser_goes_is_malformed(
    up: Upstream, client: FlowGexClient, status: int
) -> None:
    # an unknown field (200) or an error body (500) nested 5,000 deep: msgspec gives up with a
    # RecursionError, which left the client as it was (a 10 KB body): the pool logged "poll
    # crashed" with a traceback on every poll, no backoff, nothing for source_failing
    head = msgspec.json.encode(flow_gex_body("SPY", as_of=recent(), strikes=2))[:-1]
    up.push(Reply(status, head + b',"extra":' + nested(5_000) + b"}"), symbol="SPY")
    expected = MalformedPayload if status == 200 else TransientError
    with pytest.raises(expected) as info:
        await client.fetch("SPY")
    assert "SPY" in str(info.value) and info.value.status == status
    if status == 200:
        assert "nested too deeply" in str(info.value)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("gamma_flip_status", "x" * 500_000),
        ("live_net_gex_label", "x" * 500_000),
        ("endpoint_version", "x" * 500_000),
        ("expiry", "x" * 500_000),
        ("data_as_of", {"node": "x" * 500_000}),
        ("data_as_of", {f"feed_{i}": None for i in range(20_000)}),
    ],
    ids=["status", "label", "version", "expiry", "feed value", "feeds"],
)
async def test_a_text_field_far_past_any_real_one_is_refused_not_stored(
    up: Upstream, client: FlowGexClient, field: str, value: Any
) -> None:
    # each is stored as it came with every snapshot (an entry's plain field, the block's
    # extra) and flip_guard's alerts carry the status: one 500 KB value was 500 KB more in
    # Redis a poll, and in each such alert's outbox entry and webhook body
    up.push(snapshot("SPY", **{field: value}), symbol="SPY")
    with pytest.raises(MalformedPayload, match=field) as info:
        await client.fetch("SPY")
    assert len(info.value.message) <= 300


async def test_a_strike_array_far_past_any_real_chain_is_refused_not_stored(
    up: Upstream, client: FlowGexClient
) -> None:
    # tiny rows fit ~900,000 strikes in the 16 MB body bound: each poll of such a body took
    # ~0.8 s of the loop to decode and ~0.5 s to encode, the rules ran over every row, and the
    # block went to Redis; a real chain (every expiry of SPX) has a few thousand strikes
    body = flow_gex_body("SPY", as_of=recent(60))
    rows = [{"strike": float(k)} for k in range(1, MAX_STRIKES + 2)]
    up.push(Reply.json({**body, "strikes": rows}), symbol="SPY")
    with pytest.raises(MalformedPayload, match=rf"length <= {MAX_STRIKES} - at `\$.strikes`"):
        await client.fetch("SPY")
    # a large body has its rows counted before msgspec builds them (it checks a list's length
    # only once the list is built: ~110 MB for a moment at 900,000 rows)
    up.push(Reply.json({**body, "strikes": rows * 2}), symbol="SPY")
    with pytest.raises(MalformedPayload, match=f"more than {MAX_STRIKES} strike rows"):
        await client.fetch("SPY")
    up.push(Reply.json({**body, "as_of": recent(), "strikes": rows[:MAX_STRIKES]}), symbol="SPY")
    assert len(strike_rows((await client.fetch("SPY")).snapshot)) == MAX_STRIKES


async def test_a_lookalike_symbol_is_not_the_requested_one(
    up: Upstream, client: FlowGexClient
) -> None:
    fake = lookalike_symbol("IWM")
    assert fake.upper() == "IWM"  # what the old comparison accepted
    up.push(snapshot("IWM", body_symbol=fake), symbol="IWM")
    with pytest.raises(MalformedPayload, match="does not match the requested 'IWM'"):
        await client.fetch("IWM")
    # plain ASCII case differences are still the same symbol, under the requested spelling:
    # the body's ("iwm") reached the alerts, whose symbol a silence on IWM (matchers are
    # upper-cased) then did not match, and the alert ids (rule + symbol + as_of)
    up.push(snapshot("IWM", body_symbol="iwm"), symbol="IWM")
    snap = (await client.fetch("IWM")).snapshot
    assert snap.symbol == "IWM"
    assert strike_matrix(snap) is not None  # still the decoded snapshot, its matrix with it


async def test_a_huge_symbol_in_the_body_gives_a_bounded_message(
    up: Upstream, client: FlowGexClient
) -> None:
    # the refusal quoted the body's symbol whole (100 KB here; up to max_body_bytes), and the
    # redaction it went through is quadratic in such a run of letters (~5 s for 100 KB, on the
    # event loop): the message is cut to a window before it is redacted
    up.push(snapshot("SPY", body_symbol="A" * 100_000), symbol="SPY")
    with pytest.raises(MalformedPayload, match="does not match") as info:
        await client.fetch("SPY")
    assert len(info.value.message) <= 300


async def test_a_huge_expiry_in_the_body_gives_a_bounded_message(
    up: Upstream, client: FlowGexClient
) -> None:
    up.push(snapshot("SPY", expiry="A" * 100_000), symbol="SPY")
    # refused by its length when decoded, before it is compared with the requested one
    with pytest.raises(MalformedPayload, match=r"length <= 128 - at `\$\.expiry`") as info:
        await client.fetch("SPY", "2026-01-02")
    assert len(info.value.message) <= 300
    up.push(snapshot("SPY", expiry="2026-01-03"), symbol="SPY")
    with pytest.raises(MalformedPayload, match="does not match the requested"):
        await client.fetch("SPY", "2026-01-02")


@pytest.mark.parametrize(
    "expiry",
    [
        "[reset your key](https://evil.example)",
        "<!channel>",
        "2026-05-15\n",
        "١٢٣٤-05-15",
        "",
        "2026-05-15",
    ],
)
async def test_the_expiry_echoed_for_an_aggregated_request_is_dropped_not_trusted(
    up: Upstream, client: FlowGexClient, expiry: str
) -> None:
    # the body's free text (128 characters) became every alert's expiry, in its title (a
    # markdown link in a Teams or Discord card), its id and Alertmanager's expiry label; the
    # snapshot itself is the aggregated one asked for, so it is kept, without that text
    up.push(snapshot("SPY", expiry=expiry), symbol="SPY")
    with capture_logs() as logs:
        fetched = await client.fetch("SPY")
    assert fetched.snapshot.expiry is None
    (line,) = [e for e in logs if e["event"] == "payload normalised"]
    assert "in the body of an aggregated request: dropped" in line["note"]
    # a requested expiry is still compared: the same text refused there
    up.push(snapshot("SPY", expiry=expiry), symbol="SPY")
    with pytest.raises(MalformedPayload, match="does not match the requested"):
        await client.fetch("SPY", "2026-01-02")


async def test_a_strike_block_is_never_stored_from_a_refused_body(
    up: Upstream, client: FlowGexClient
) -> None:
    # the same refusal for a payload whose other fields are all fine: nothing half-accepted
    body = {"symbol": "SPY", "as_of": "2026-11-02T15:00:00Z", "underlying_price": 500.0,
            "live_net_gex": 1.0, "strikes": [{"strike": 500.0}, {"strike": 500.0}]}  # fmt: skip
    up.push(Reply.json(body), symbol="SPY")
    with pytest.raises(MalformedPayload, match="strike 500 appears more than once"):
        await client.fetch("SPY")
