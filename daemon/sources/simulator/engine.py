"""The simulator behind the HTTP server: markets per symbol, snapshot timing, body cache,
scripted faults. No I/O here, so tests can drive it directly."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import msgspec

from gex_alertd.model import iso_utc
from gex_alertd.sources.simulator.clock import Clock
from gex_alertd.sources.simulator.market import Market
from gex_alertd.sources.simulator.scenario import FaultEvent, Scenario, SymbolParams
from gex_alertd.sources.simulator.snapshot import (
    ENDPOINT_VERSION,
    ExposureGexBody,
    FlowGexBody,
    data_as_of,
    gamma_flip,
    label_of,
    net_of,
)

SYMBOL_RE = re.compile(r"[A-Z0-9.^_/-]{1,16}")
EXPIRY_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
_encoder = msgspec.json.Encoder()


class SimError(Exception):
    """A request the simulated provider refuses; becomes an error response."""

    def __init__(self, status: int, error: str, message: str):
        self.status = status
        self.error = error
        self.message = message
        super().__init__(message)


@dataclass(slots=True)
class ActiveFault:
    event: FaultEvent
    remaining: int | None  # requests left (None: until the duration ends)


@dataclass
class Simulator:
    scenario: Scenario
    clock: Clock
    seed: int = 7
    cache_s: float = 15.0  # the provider's ~15 s cache; 0 = one snapshot per model tick
    markets: dict[str, Market] = field(default_factory=dict)
    _cache: dict[tuple[str, str, str | None], tuple[int, bytes]] = field(default_factory=dict)
    _faults: list[ActiveFault] = field(default_factory=list)
    _next_fault: int = 0

    def __post_init__(self) -> None:
        self._fault_events = [e for e in self.scenario.events if isinstance(e, FaultEvent)]

    @property
    def tick_s(self) -> float:
        return self.scenario.tick_s

    def snapshot_tick(self) -> int:
        """The model tick a request now is served from (the cache quantum, if caching)."""
        now = self.clock.now()
        quantum = max(self.cache_s, self.tick_s) if self.cache_s > 0 else self.tick_s
        t = math.floor(now / quantum + 1e-9) * quantum
        return math.floor(t / self.tick_s + 1e-9)

    def market(self, symbol: str) -> Market:
        m = self.markets.get(symbol)
        if m is None:
            params = self.scenario.symbols.get(symbol, SymbolParams())
            m = Market(
                symbol, self.seed, self.clock.start, self.tick_s, params, self.scenario.events
            )
            self.markets[symbol] = m
        return m

    def check_symbol(self, raw: str) -> str:
        symbol = raw.upper()
        if not SYMBOL_RE.fullmatch(symbol):
            raise SimError(400, "bad_request", f"Invalid symbol {raw[:32]!r}")
        if symbol.startswith("ZZ") or symbol in self.scenario.unknown_symbols:
            raise SimError(404, "not_found", f"Symbol {symbol} not found")
        return symbol

    def check_expiry(self, raw: str | None) -> str | None:
        if raw is None or raw == "":
            return None
        try:
            if not EXPIRY_RE.fullmatch(raw):
                raise ValueError
            date.fromisoformat(raw)
        except ValueError:
            msg = f"Invalid expiry {raw[:32]!r}: expected yyyy-MM-dd"
            raise SimError(400, "bad_request", msg) from None
        return raw

    # --- faults ---------------------------------------------------------------------------

    def take_fault(self, symbol: str | None) -> FaultEvent | None:
        """The fault this request suffers, if any (consumes one of its `count`)."""
        now = self.clock.now()
        while (
            self._next_fault < len(self._fault_events)
            and self._fault_events[self._next_fault].at <= now
        ):
            ev = self._fault_events[self._next_fault]
            self._next_fault += 1
            remaining = ev.count if ev.count is not None else (None if ev.duration else 1)
            self._faults.append(ActiveFault(ev, remaining))
        for f in list(self._faults):
            ev = f.event
            if ev.duration is not None and now >= ev.at + ev.duration:
                self._faults.remove(f)
                continue
            if ev.symbol is not None and ev.symbol.upper() != symbol:
                continue
            if f.remaining is not None:
                f.remaining -= 1
                if f.remaining <= 0:
                    self._faults.remove(f)
            return ev
        return None

    # --- bodies ---------------------------------------------------------------------------

    def body(self, kind: str, symbol: str, expiry: str | None, min_oi: int = 0) -> bytes:
        """The encoded JSON body for (kind, symbol, expiry) at the current snapshot tick."""
        tick = self.snapshot_tick()
        key = (kind, symbol, expiry)
        hit = self._cache.get(key)
        if hit is not None and hit[0] == tick and not min_oi:
            return hit[1]
        m = self.market(symbol)
        m.step_to(max(tick, m.tick))
        body = self._encode(kind, m, expiry, min_oi)
        if not min_oi:  # only listed expiries get here, so the cache stays bounded
            self._cache[key] = (tick, body)
        return body

    def _encode(self, kind: str, m: Market, expiry: str | None, min_oi: int) -> bytes:
        now = m.time_at(m.tick)
        e_idx: int | None = None
        if expiry is not None:
            dates = [d.isoformat() for d in m.chain.expiries]
            if expiry not in dates or m.years_left(dates.index(expiry), now) <= 0:
                listed = ", ".join(m.chain.expiries[e].isoformat() for e in m.live_expiries(now))
                msg = f"No listed expiry {expiry} for {m.symbol} (listed: {listed})"
                raise SimError(404, "not_found", msg)
            e_idx = dates.index(expiry)
        live = kind == "flow"
        rows = m.rows(e_idx, live)
        if min_oi:
            rows = [r for r in rows if r.call_oi + r.put_oi >= min_oi]
        net = net_of(rows)
        flip = gamma_flip(rows, m.spot)
        status = "available" if flip is not None else "no_boundary"
        withheld = m.flip_withheld
        if withheld is not None and m.tick * m.tick_s < withheld[1]:
            status = withheld[0]  # scenario `flip_status`: the flip is served but not usable
        as_of = iso_utc(now)
        oi_as_of = iso_utc(m.start.replace(hour=0, minute=0, second=0, microsecond=0))
        feeds = data_as_of(as_of, oi_as_of)
        for feed, (lag, until) in m.stale_feeds.items():
            if m.tick * m.tick_s < until:  # scenario `stale_feed`: one feed lags the snapshot
                feeds[feed] = iso_utc(now - timedelta(seconds=lag))
        if live:
            return _encoder.encode(
                FlowGexBody(
                    m.symbol, as_of, m.spot, expiry, net, label_of(net), flip, status, rows,
                    ENDPOINT_VERSION, feeds,
                )
            )  # fmt: skip
        return _encoder.encode(
            ExposureGexBody(
                m.symbol, as_of, m.spot, expiry, net,
                "short_gamma" if net < 0 else "long_gamma", flip, status, rows,
                ENDPOINT_VERSION, feeds,
            )
        )  # fmt: skip

    def snapshot_time(self) -> datetime:
        return self.clock.start + timedelta(seconds=self.snapshot_tick() * self.tick_s)
