"""The simulator over real HTTP, driven by the official flashalpha SDK (synchronous: threads)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import flashalpha
import msgspec
import pytest
from flashalpha import (
    AuthenticationError,
    FlashAlpha,
    NotFoundError,
    RateLimitError,
    ServerError,
    TierRestrictedError,
)

from gex_alertd.config import SimulatorOptions
from gex_alertd.model import PayloadError, decode_flow_gex
from gex_alertd.sources.simulator.clock import ManualClock
from gex_alertd.sources.simulator.embedded import EmbeddedSimulator, make_app, serve, start_embedded

KEY = "sim-alpha-key"
KEYS = {"growth-key": "growth", "basic-key": "basic"}

FAULTS = """
events:
  - {at: 10s, do: fault, kind: error, status: 502, count: 2, symbol: QQQ}
  - {at: 20s, do: fault, kind: malformed, count: 1}
  - {at: 30s, do: fault, kind: rate_limit, retry_after: 7, count: 2}
  - {at: 40s, do: fault, kind: slow, delay_s: 0.2, count: 1}
  - {at: 50s, do: fault, kind: timeout, delay_s: 30, count: 1}
"""


@pytest.fixture
async def server() -> AsyncIterator[tuple[EmbeddedSimulator, ManualClock]]:
    clock = ManualClock()
    app = make_app(
        SimulatorOptions(cache_s=0, rate_limit_per_min=0), KEY, FAULTS, clock=clock, keys=KEYS
    )
    handle = await serve(app)
    yield handle, clock
    await handle.close()


def client(handle: EmbeddedSimulator, key: str = KEY, timeout: float = 10) -> FlashAlpha:
    return FlashAlpha(key, base_url=handle.base_url, timeout=timeout)


async def test_sdk_flow_gex_roundtrip(server: tuple[EmbeddedSimulator, ManualClock]) -> None:
    handle, _ = server
    fa = client(handle)
    data = await asyncio.to_thread(fa.flow_gex, "SPY")
    assert data["symbol"] == "SPY" and data["underlying_price"] == 600.0
    assert data["live_net_gex_label"] in ("positive", "negative")
    assert data["gamma_flip_status"] == "available" and data["endpoint_version"]
    assert set(data["data_as_of"]) >= {"node", "flow_feed", "oi_feed"}
    assert len(data["strikes"]) == 200
    # the daemon's decoder accepts the same bytes
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{handle.base_url}/v1/flow/gex/spy", headers={"X-Api-Key": KEY}) as r:
            body = await r.read()
            assert r.headers["Content-Type"].startswith("application/json")
    snap = decode_flow_gex(body, symbol="SPY")
    assert snap.live_net_gex == data["live_net_gex"]
    front = handle.simulator.market("SPY").chain.expiries[0].isoformat()
    one = await asyncio.to_thread(fa.flow_gex, "SPY", expiry=front)
    assert one["expiry"] == front and len(one["strikes"]) < 200
    settled = await asyncio.to_thread(fa.gex, "SPY", expiration=front)
    assert settled["expiration"] == front and "net_gex" in settled
    assert [r["strike"] for r in settled["strikes"]] == [r["strike"] for r in one["strikes"]]


async def test_sdk_typed_errors(server: tuple[EmbeddedSimulator, ManualClock]) -> None:
    handle, _ = server
    with pytest.raises(AuthenticationError) as e401:
        await asyncio.to_thread(client(handle, "wrong-key").flow_gex, "SPY")
    assert e401.value.status_code == 401 and "Invalid API key" in str(e401.value)
    with pytest.raises(TierRestrictedError) as e403:
        await asyncio.to_thread(client(handle, "growth-key").flow_gex, "SPY")
    assert e403.value.current_plan == "growth" and e403.value.required_plan == "alpha"
    # the growth plan does reach the settled endpoint; basic does not
    await asyncio.to_thread(client(handle, "growth-key").gex, "SPY")
    with pytest.raises(TierRestrictedError):
        await asyncio.to_thread(client(handle, "basic-key").gex, "SPY")
    with pytest.raises(NotFoundError) as e404:
        await asyncio.to_thread(client(handle).flow_gex, "ZZTOP")
    assert e404.value.response == {"error": "not_found", "message": "Symbol ZZTOP not found"}
    with pytest.raises(flashalpha.FlashAlphaError) as e400:
        await asyncio.to_thread(client(handle).flow_gex, "SPY", expiry="tomorrow")
    assert e400.value.status_code == 400 and "yyyy-MM-dd" in str(e400.value)


async def test_missing_key_is_401_with_json_body(
    server: tuple[EmbeddedSimulator, ManualClock],
) -> None:
    handle, _ = server
    async with aiohttp.ClientSession() as s, s.get(f"{handle.base_url}/v1/flow/gex/SPY") as r:
        assert r.status == 401
        body = await r.json()
    assert body["error"] == "unauthorized" and "X-Api-Key" in body["message"]


async def test_rate_limit_429_and_headers() -> None:
    clock = ManualClock()
    app = make_app(SimulatorOptions(cache_s=0, rate_limit_per_min=3), KEY, None, clock=clock)
    handle = await serve(app)
    try:
        url = f"{handle.base_url}/v1/flow/gex/SPY"
        async with aiohttp.ClientSession(headers={"X-Api-Key": KEY}) as s:
            remaining = []
            for _ in range(3):
                async with s.get(url) as r:
                    assert r.status == 200
                    assert r.headers["X-RateLimit-Limit"] == "3"
                    remaining.append(r.headers["X-RateLimit-Remaining"])
            assert remaining == ["2", "1", "0"]
            clock.set(20)
        with pytest.raises(RateLimitError) as e429:
            await asyncio.to_thread(client(handle).flow_gex, "SPY")
        assert e429.value.retry_after == 40  # the rest of the 60 s window
        assert "3 requests per minute" in str(e429.value)
        clock.set(60)
        await asyncio.to_thread(client(handle).flow_gex, "SPY")  # a new window
    finally:
        await handle.close()


async def test_scripted_faults(server: tuple[EmbeddedSimulator, ManualClock]) -> None:
    handle, clock = server
    fa = client(handle)
    clock.set(10)
    await asyncio.to_thread(fa.flow_gex, "SPY")  # the 5xx fault targets QQQ only
    for _ in range(2):
        with pytest.raises(ServerError) as e5xx:
            await asyncio.to_thread(fa.flow_gex, "QQQ")
        assert e5xx.value.status_code == 502
    await asyncio.to_thread(fa.flow_gex, "QQQ")  # count exhausted
    clock.set(20)
    async with aiohttp.ClientSession(headers={"X-Api-Key": KEY}) as s:
        async with s.get(f"{handle.base_url}/v1/flow/gex/SPY") as r:
            assert r.status == 200
            bad = await r.read()
        with pytest.raises(PayloadError):
            decode_flow_gex(bad)
        clock.set(30)
        for _ in range(2):
            async with s.get(f"{handle.base_url}/v1/flow/gex/IWM") as r:
                assert r.status == 429 and r.headers["Retry-After"] == "7"
        clock.set(40)
        async with s.get(f"{handle.base_url}/v1/flow/gex/IWM") as r:  # slow, then fine
            assert r.status == 200
            decode_flow_gex(await r.read())
        clock.set(50)
        with pytest.raises(asyncio.TimeoutError):
            async with s.get(
                f"{handle.base_url}/v1/flow/gex/IWM", timeout=aiohttp.ClientTimeout(total=0.3)
            ) as r:
                await r.read()
        async with s.get(f"{handle.base_url}/v1/flow/gex/IWM") as r:
            assert r.status == 200


async def test_same_seed_same_bytes_over_http() -> None:
    bodies = []
    for _ in range(2):
        clock = ManualClock()
        handle = await serve(make_app(SimulatorOptions(cache_s=0), KEY, "demo", clock=clock))
        try:
            got = []
            async with aiohttp.ClientSession(headers={"X-Api-Key": KEY}) as s:
                for t in (0, 11, 25, 31):
                    clock.set(t)
                    for sym in ("SPY", "QQQ", "IWM"):
                        async with s.get(f"{handle.base_url}/v1/flow/gex/{sym}") as r:
                            got.append(await r.read())
            bodies.append(got)
        finally:
            await handle.close()
    assert bodies[0] == bodies[1]
    assert len(set(bodies[0])) == len(bodies[0])


async def test_start_embedded(tmp_path) -> None:
    (tmp_path / "sc.yaml").write_text("events:\n  - {at: 0s, do: spot, symbol: SPY, to: 612.5}\n")
    opts = SimulatorOptions(scenario="sc.yaml", cache_s=1, symbols=["NDX"])
    handle = await start_embedded(opts, ["SPY", "QQQ"], "k1", base_dir=tmp_path)
    try:
        assert handle.base_url.startswith("http://127.0.0.1:")
        assert set(handle.simulator.markets) == {"SPY", "QQQ", "NDX"}
        data = await asyncio.to_thread(FlashAlpha("k1", base_url=handle.base_url).flow_gex, "SPY")
        assert data["underlying_price"] == 612.5
    finally:
        await handle.close()
    demo = await start_embedded(SimulatorOptions(scenario="demo"), ["SPY"], "k2")
    await demo.close()


def test_error_bodies_are_documented_shape() -> None:
    from gex_alertd.sources.simulator.server import error_response

    r = error_response(403, "forbidden", "needs alpha", current_plan="basic", required_plan="alpha")
    assert isinstance(r.body, bytes)
    assert msgspec.json.decode(r.body) == {
        "error": "forbidden", "message": "needs alpha", "current_plan": "basic",
        "required_plan": "alpha",
    }  # fmt: skip


async def test_unknown_route_is_json_404(server: tuple[EmbeddedSimulator, ManualClock]) -> None:
    handle, _ = server
    with pytest.raises(NotFoundError) as exc:
        await asyncio.to_thread(client(handle)._get, "/v1/flow/nope/SPY")
    assert "No endpoint GET /v1/flow/nope/SPY" in str(exc.value)
