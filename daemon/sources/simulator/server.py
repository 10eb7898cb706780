"""The simulated provider over HTTP (aiohttp): the Flow GEX wire contract, auth, plans,
per-key rate limit, the provider's caching, and scripted faults."""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field

import msgspec
from aiohttp import web

from gex_alertd.sources.simulator.clock import Clock
from gex_alertd.sources.simulator.engine import SimError, Simulator
from gex_alertd.sources.simulator.scenario import FaultEvent

FLOW_PLANS = frozenset({"alpha"})  # the SDK documents Flow GEX as Alpha
EXPOSURE_PLANS = frozenset({"growth", "alpha"})
_encoder = msgspec.json.Encoder()


@dataclass
class ServerSettings:
    keys: dict[str, str]  # API key -> plan name ("alpha", "growth", "basic", ...)
    rate_limit_per_min: int = 0  # per key, fixed 60 s window; 0 = unlimited


@dataclass
class RateLimiter:
    limit: int
    clock: Clock
    _windows: dict[str, tuple[int, int]] = field(default_factory=dict)  # key -> (window, used)

    def take(self, key: str) -> tuple[bool, dict[str, str]]:
        now = self.clock.limiter_now()
        window = math.floor(now / 60.0)
        start, used = self._windows.get(key, (window, 0))
        if start != window:
            used = 0
        reset = max(1, math.ceil((window + 1) * 60.0 - now))
        ok = used < self.limit
        if ok:
            used += 1
        self._windows[key] = (window, used)
        headers = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.limit - used),
            "X-RateLimit-Reset": str(reset),  # seconds until the window resets
        }
        if not ok:
            headers["Retry-After"] = str(reset)
        return ok, headers


SIMULATOR = web.AppKey("simulator", Simulator)
SETTINGS = web.AppKey("settings", ServerSettings)
LIMITER = web.AppKey("limiter", RateLimiter)


def error_response(
    status: int, error: str, message: str, headers: dict[str, str] | None = None, **extra: str
) -> web.Response:
    body = {"error": error, "message": message, **extra}
    return web.Response(
        status=status, body=_encoder.encode(body), content_type="application/json",
        headers=headers,
    )  # fmt: skip


async def _fault_response(
    ev: FaultEvent, headers: dict[str, str], good: bytes | None
) -> web.Response | None:
    if ev.kind == "error":
        return error_response(ev.status, "server_error", "Simulated upstream failure", headers)
    if ev.kind == "rate_limit":
        return error_response(
            429, "rate_limited", "Rate limit exceeded (simulated burst)",
            {**headers, "Retry-After": str(ev.retry_after)},
        )  # fmt: skip
    if ev.kind == "timeout":
        await asyncio.sleep(ev.delay_s)
        return error_response(504, "gateway_timeout", "Simulated upstream timeout", headers)
    if ev.kind == "slow":
        await asyncio.sleep(ev.delay_s)
        return None
    if ev.kind == "malformed" and good is not None:
        return web.Response(
            body=good[: len(good) // 2], content_type="application/json", headers=headers
        )
    return None


def _handler(kind: str):
    plans = FLOW_PLANS if kind == "flow" else EXPOSURE_PLANS
    required = "alpha" if kind == "flow" else "growth"
    name = "Flow GEX" if kind == "flow" else "Exposure GEX"

    async def handle(request: web.Request) -> web.Response:
        sim = request.app[SIMULATOR]
        settings = request.app[SETTINGS]
        key = request.headers.get("X-Api-Key")
        if not key:
            return error_response(
                401, "unauthorized", "Missing API key: send it in the X-Api-Key header"
            )
        plan = settings.keys.get(key)
        if plan is None:
            return error_response(401, "unauthorized", "Invalid API key")
        if plan not in plans:
            return error_response(
                403, "forbidden", f"{name} requires the {required.capitalize()} plan or higher",
                current_plan=plan, required_plan=required,
            )  # fmt: skip
        headers: dict[str, str] = {}
        if settings.rate_limit_per_min > 0:
            ok, headers = request.app[LIMITER].take(key)
            if not ok:
                limit = settings.rate_limit_per_min
                return error_response(
                    429, "rate_limited", f"Rate limit exceeded: {limit} requests per minute",
                    headers,
                )  # fmt: skip
        query = request.rel_url.query
        try:
            symbol = sim.check_symbol(request.match_info["symbol"])
            raw_expiry = query.get("expiry") if kind == "flow" else (
                query.get("expiration") or query.get("expiry")
            )  # fmt: skip
            expiry = sim.check_expiry(raw_expiry)
            min_oi = 0
            if kind == "exposure" and query.get("min_oi"):
                try:
                    min_oi = int(query["min_oi"])
                except ValueError:
                    raise SimError(400, "bad_request", "min_oi must be an integer") from None
            fault = sim.take_fault(symbol)
            if fault is not None and fault.kind != "malformed":
                resp = await _fault_response(fault, headers, None)
                if resp is not None:
                    return resp
            body = sim.body(kind, symbol, expiry, min_oi)
        except SimError as exc:
            return error_response(exc.status, exc.error, exc.message, headers)
        if fault is not None and fault.kind == "malformed":
            resp = await _fault_response(fault, headers, body)
            assert resp is not None
            return resp
        return web.Response(body=body, content_type="application/json", headers=headers)

    return handle


def build_app(sim: Simulator, settings: ServerSettings) -> web.Application:
    app = web.Application()
    app[SIMULATOR] = sim
    app[SETTINGS] = settings
    app[LIMITER] = RateLimiter(settings.rate_limit_per_min, sim.clock)
    app.router.add_get("/v1/flow/gex/{symbol}", _handler("flow"))
    app.router.add_get("/v1/exposure/gex/{symbol}", _handler("exposure"))
    app.router.add_route("*", "/{tail:.*}", _no_route)
    return app


async def _no_route(request: web.Request) -> web.Response:
    # JSON like every other error, so SDK clients get their typed NotFoundError with a message
    return error_response(404, "not_found", f"No endpoint {request.method} {request.path}")
