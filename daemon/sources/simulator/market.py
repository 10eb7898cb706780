"""One symbol's simulated market: spot path, chain, flow, and the scripted events.

The state advances tick by tick (the RNG is consumed in the same order whatever the request
pattern), so the snapshot at tick n depends only on (seed, scenario, n).
"""

from __future__ import annotations

import bisect
import math
import random
from collections import defaultdict
from datetime import datetime, timedelta

import structlog

from gex_alertd.sources.simulator import chain as chainmod
from gex_alertd.sources.simulator.flow import Aggressor, FlowBook, Print, nbbo, print_price
from gex_alertd.sources.simulator.pricing import MIN_T, bs_gamma
from gex_alertd.sources.simulator.scenario import (
    ApproachEvent,
    BlockEvent,
    CrossFlipEvent,
    DriftEvent,
    Event,
    FlipStatusEvent,
    NetSignEvent,
    SpotEvent,
    StaleFeedEvent,
    SymbolParams,
    WallEvent,
)
from gex_alertd.sources.simulator.snapshot import Leg, WireRow, gamma_flip, net_of, strike_rows

log = structlog.get_logger()
YEAR_S = 365.0 * 86400.0
TRADING_YEAR_S = 252 * 6.5 * 3600.0  # the spot path diffuses in trading time
RATE = 0.04
_EXPIRY_WEIGHTS = (0.45, 0.2, 0.12, 0.1, 0.08, 0.05)


class Market:
    def __init__(
        self, symbol: str, seed: int, start: datetime, tick_s: float, params: SymbolParams,
        events: list[Event],
    ):  # fmt: skip
        self.symbol = symbol
        self.start = start
        self.tick_s = tick_s
        self.rng = random.Random(chainmod.symbol_seed(seed, symbol, "path"))
        self.level = params.spot or chainmod.default_spot(symbol)
        self.spot = round(self.level, 2)
        atm_iv = params.atm_iv or chainmod.default_iv(symbol)
        self.path_vol = params.annual_vol if params.annual_vol is not None else atm_iv * 0.9
        self.drift = params.drift
        oi_scale = params.oi_scale
        if oi_scale is None:
            oi_scale = chainmod.DEFAULT_OI_SCALE.get(symbol, 0.1)
        self.trades_per_s = params.trades_per_s if params.trades_per_s is not None else (
            2.0 + 6.0 * oi_scale
        )  # fmt: skip
        self.chain = chainmod.build_chain(
            symbol, seed, start, self.spot, atm_iv, params.strikes, oi_scale
        )
        self.book = FlowBook([c.settled for c in self.chain.contracts])
        self.expiry_strikes = [
            [self.chain.contracts[i].strike for i in idx[::2]] for idx in self.chain.by_expiry
        ]
        self.events = [e for e in events if getattr(e, "symbol", None) == symbol]
        self._next_event = 0
        self._scheduled: dict[int, list[tuple[int, int, Aggressor]]] = defaultdict(list)
        self.tick = 0
        self.flip_withheld: tuple[str, float] | None = None  # (status, until sim seconds)
        self.stale_feeds: dict[str, tuple[float, float]] = {}  # feed -> (lag s, until sim s)
        self._gamma_tick = -1
        self._gammas: list[float | None] = []
        self._apply_events(0.0)

    # --- time -----------------------------------------------------------------------------

    def time_at(self, tick: int) -> datetime:
        return self.start + timedelta(seconds=tick * self.tick_s)

    def step_to(self, tick: int) -> None:
        while self.tick < tick:
            self.tick += 1
            self._step()

    def _step(self) -> None:
        dt = self.tick_s / TRADING_YEAR_S
        z = self.rng.gauss(0.0, 1.0)
        sigma = self.path_vol
        self.level *= math.exp((self.drift - 0.5 * sigma * sigma) * dt + sigma * math.sqrt(dt) * z)
        self.spot = round(self.level, 2)
        for _ in range(self._poisson(self.trades_per_s * self.tick_s)):
            self._random_print()
        for contract, size, aggressor in self._scheduled.pop(self.tick, ()):
            self._print(contract, size, aggressor, 0.0)
        self._apply_events(self.tick * self.tick_s)

    def _poisson(self, lam: float) -> int:
        limit, k, p = math.exp(-lam), 0, self.rng.random()
        while p > limit:
            k += 1
            p *= self.rng.random()
        return k

    def years_left(self, expiry: int, now: datetime) -> float:
        return (self.chain.closes[expiry] - now).total_seconds() / YEAR_S

    def live_expiries(self, now: datetime) -> list[int]:
        return [e for e in range(len(self.chain.expiries)) if self.years_left(e, now) > 0]

    # --- flow -----------------------------------------------------------------------------

    def _contract_near(self, expiry: int, strike: float) -> int:
        """The call of the listed strike nearest `strike` in that expiry (put is +1)."""
        strikes = self.expiry_strikes[expiry]
        j = bisect.bisect_left(strikes, strike)
        if j == len(strikes) or (j > 0 and strike - strikes[j - 1] <= strikes[j] - strike):
            j -= 1
        return self.chain.by_expiry[expiry][2 * j]

    def _random_print(self) -> None:
        now = self.time_at(self.tick)
        live = self.live_expiries(now)
        if not live:
            return
        weights = [_EXPIRY_WEIGHTS[min(e, len(_EXPIRY_WEIGHTS) - 1)] for e in live]
        expiry = self.rng.choices(live, weights)[0]
        t = self.years_left(expiry, now)
        spread = 0.01 + 0.6 * self.chain.atm_iv * math.sqrt(t)
        target = self.spot * (1.0 + self.rng.gauss(0.0, spread))
        i = self._contract_near(expiry, target) + (0 if self.rng.random() < 0.5 else 1)
        size = min(500, max(1, int(self.rng.lognormvariate(2.3, 1.0))))
        aggressor: Aggressor = "buy" if self.rng.random() < 0.5 else "sell"
        self._print(i, size, aggressor, self.rng.random())

    def _print(self, i: int, size: int, aggressor: Aggressor, u: float) -> None:
        c = self.chain.contracts[i]
        now = self.time_at(self.tick)
        t = max(self.years_left(c.expiry, now), MIN_T)
        vol = chainmod.smile_vol(self.chain.atm_iv, self.spot, c.strike, t)
        quote = nbbo(c.call, self.spot, c.strike, t, vol, RATE)
        self.book.apply(Print(i, size, print_price(quote, aggressor, u), quote))

    # --- events ---------------------------------------------------------------------------

    def _apply_events(self, now_s: float) -> None:
        while self._next_event < len(self.events) and self.events[self._next_event].at <= now_s:
            ev = self.events[self._next_event]
            self._next_event += 1
            bound = log.bind(symbol=self.symbol, event=type(ev).__name__, at=float(ev.at))
            if isinstance(ev, SpotEvent):
                move = ev.move_pct or 0.0
                self._set_level(ev.to if ev.to is not None else self.level * (1 + move / 100))
            elif isinstance(ev, CrossFlipEvent):
                self._cross_flip(ev)
            elif isinstance(ev, NetSignEvent):
                self._net_sign(ev)
            elif isinstance(ev, BlockEvent):
                self._block(ev)
            elif isinstance(ev, WallEvent):
                self._wall(ev)
            elif isinstance(ev, ApproachEvent):
                self._approach(ev)
            elif isinstance(ev, DriftEvent):
                self._drift(ev)
            elif isinstance(ev, FlipStatusEvent):
                self.flip_withheld = (ev.status, float(ev.at + ev.duration))
            elif isinstance(ev, StaleFeedEvent):
                self.stale_feeds[ev.feed] = (float(ev.lag), float(ev.at + ev.duration))
            # spot jumps can come by the hundred in test scenarios: keep them out of info
            (bound.debug if isinstance(ev, SpotEvent) else bound.info)(
                "simulator event applied", spot=self.spot
            )

    def _set_level(self, level: float) -> None:
        self.level = level
        self.spot = round(level, 2)
        self._gamma_tick = -1

    def _cross_flip(self, ev: CrossFlipEvent) -> None:
        flip = self.live_flip(self.spot)
        if flip is None:
            log.warning("cross_flip: no live flip to cross", symbol=self.symbol)
            return
        below = self.spot < flip if ev.side == "other" else ev.side == "above"
        sign = 1.0 if below else -1.0
        # The flip moves with spot (gamma re-centres), so iterate to a fixed point.
        gap = ev.gap_pct / 100.0
        target = flip * (1.0 + sign * gap)
        for _ in range(16):
            level = round(target, 2)
            flip = self.live_flip(level)
            if flip is None:
                # past the last crossing: no flip at all there; come back halfway
                target = (target + self.spot) / 2.0
                continue
            if (level - flip) * sign > flip * gap / 2.0:
                break
            target = flip * (1.0 + sign * gap)
        self._set_level(target)

    def _net_sign(self, ev: NetSignEvent) -> None:
        net = net_of(self.rows(None, live=True))
        if (net < 0) == (ev.to == "negative"):
            return
        call = ev.to == "positive"
        now = self.time_at(self.tick)
        gammas = self.gammas()
        factor = 100.0 * self.spot * self.spot * 0.01
        picks = []
        for e in self.live_expiries(now)[:2]:
            for i in self.chain.by_expiry[e]:
                c = self.chain.contracts[i]
                if c.call == call and abs(c.strike / self.spot - 1) * 100 <= ev.width_pct:
                    picks.append(i)
        per_contract = sum(gammas[i] or 0.0 for i in picks) * factor
        if not picks or per_contract <= 0:
            log.warning("net_sign: no contracts near spot to trade", symbol=self.symbol)
            return
        # buy-side prints at the ask infer as opening with confidence 0.9 (0.8 of the size)
        contracts = abs(net) * (1.0 + ev.margin) / per_contract / 0.8
        ticks = max(1, round(ev.over_s / self.tick_s))
        size = max(1, math.ceil(contracts / ticks))
        for k in range(1, ticks + 1):
            for i in picks:
                self._scheduled[self.tick + k].append((i, size, "buy"))

    def _block(self, ev: BlockEvent) -> None:
        now = self.time_at(self.tick)
        live = self.live_expiries(now)
        if ev.expiry is not None:
            dates = [self.chain.expiries[e] for e in live]
            if ev.expiry not in dates:
                log.warning("block: expiry not listed", symbol=self.symbol, expiry=str(ev.expiry))
                return
            expiry = live[dates.index(ev.expiry)]
        elif live:
            expiry = live[0]
        else:
            return
        strike = self.spot if ev.strike == "atm" else float(ev.strike)
        i = self._contract_near(expiry, strike) + (0 if ev.right == "call" else 1)
        self._print(i, ev.contracts, ev.aggressor, 0.0)

    def _near_spot(self, call: bool, width_pct: float) -> list[int]:
        """Contracts of one right within `width_pct` of spot in the two front expiries."""
        now = self.time_at(self.tick)
        return [
            i
            for e in self.live_expiries(now)[:2]
            for i in self.chain.by_expiry[e]
            if self.chain.contracts[i].call == call
            and abs(self.chain.contracts[i].strike / self.spot - 1) * 100 <= width_pct
        ]

    def _wall(self, ev: WallEvent) -> None:
        call = ev.wall == "call"
        rows = self.rows(None, live=True)
        size_of = (lambda r: r.call_gex) if call else (lambda r: -r.put_gex)
        wall = max((size_of(r) for r in rows), default=0.0)
        target = self.spot * (1 + ev.move_pct / 100)
        gammas = self.gammas()
        now = self.time_at(self.tick)
        # the listed contract nearest the target with the most gamma (a 0DTE far out has none)
        picks = [
            self._contract_near(e, target) + (0 if call else 1) for e in self.live_expiries(now)
        ]
        picks = [i for i in picks if (gammas[i] or 0.0) > 0]
        if not picks:
            log.warning("wall: no contract to trade", symbol=self.symbol)
            return
        i = max(picks, key=lambda j: gammas[j] or 0.0)
        strike = self.chain.contracts[i].strike
        here = next((size_of(r) for r in rows if r.strike == strike), 0.0)
        need = wall * (1 + ev.margin) - here
        if need <= 0:
            return
        per_contract = (gammas[i] or 0.0) * 100.0 * self.spot * self.spot * 0.01
        self._print(i, max(1, math.ceil(need / per_contract / 0.8)), "buy", 0.0)

    def level_at(self, level: str, spot: float) -> float | None:
        if level == "flip":
            return self.live_flip(spot)
        rows = self.rows(None, True, spot)
        if not rows:
            return None
        if level == "call_wall":
            return max(rows, key=lambda r: r.call_gex).strike
        return max(rows, key=lambda r: -r.put_gex).strike

    def _approach(self, ev: ApproachEvent) -> None:
        sign = 1.0 if ev.side == "above" else -1.0
        level = self.level_at(ev.level, self.spot)
        if level is None:
            log.warning("approach: no such level now", symbol=self.symbol, level=ev.level)
            return

        def off(x: float) -> float | None:
            """Signed distance from where spot should be: > 0 means x is too far `side`."""
            at = self.level_at(ev.level, round(x, 2))
            return None if at is None else sign * (x - at) / x * 100 - ev.gap_pct

        # the levels move with spot (the flip most: gamma re-centres), so no fixed point
        # is to be had by iterating; bisect between spot and the level instead, on the
        # distance that spot itself makes
        lo, hi = self.spot, level * (1 + sign * ev.gap_pct / 100)
        f_lo = off(lo)
        for _ in range(24):
            mid = (lo + hi) / 2
            f_mid = off(mid)
            if f_mid is None or f_lo is None or (f_mid > 0) == (f_lo > 0):
                lo, f_lo = mid, f_mid
            else:
                hi = mid
        self._set_level(hi if off(hi) is not None else lo)

    def _drift(self, ev: DriftEvent) -> None:
        settled = self.rows(None, live=False)
        total = sum(
            abs(r.call_gex) + abs(r.put_gex)
            for r in settled
            if abs(r.strike / self.spot - 1) * 100 <= ev.width_pct
        )
        picks = self._near_spot(ev.right == "call", ev.width_pct)
        gammas = self.gammas()
        per_contract = sum(gammas[i] or 0.0 for i in picks) * 100.0 * self.spot * self.spot * 0.01
        if not picks or per_contract <= 0 or total <= 0:
            log.warning("drift: no contracts near spot to trade", symbol=self.symbol)
            return
        # a quarter more than asked: inference keeps ~0.8 of a print at the ask as opening
        contracts = total * ev.pct / 100 * 1.25 / per_contract / 0.8
        ticks = max(1, round(ev.over_s / self.tick_s))
        size = max(1, math.ceil(contracts / ticks))
        for k in range(1, ticks + 1):
            for i in picks:
                self._scheduled[self.tick + k].append((i, size, "buy"))

    # --- snapshot inputs ------------------------------------------------------------------

    def gammas(self, spot: float | None = None) -> list[float | None]:
        """Gamma per contract at this tick (None once expired); cached for the current spot."""
        if spot is None and self._gamma_tick == self.tick:
            return self._gammas
        s = self.spot if spot is None else spot
        now = self.time_at(self.tick)
        iv = self.chain.atm_iv
        out: list[float | None] = []
        t_by_exp = [self.years_left(e, now) for e in range(len(self.chain.expiries))]
        for c in self.chain.contracts:
            t = t_by_exp[c.expiry]
            if t <= 0:
                out.append(None)
                continue
            t = max(t, MIN_T)
            out.append(bs_gamma(s, c.strike, t, chainmod.smile_vol(iv, s, c.strike, t), RATE))
        if spot is None:
            self._gamma_tick, self._gammas = self.tick, out
        return out

    def legs(self, expiry: int | None, live: bool, spot: float | None = None) -> list[Leg]:
        gammas = self.gammas(spot)
        book = self.book
        out = []
        indexes = (
            range(len(self.chain.contracts)) if expiry is None else self.chain.by_expiry[expiry]
        )
        for i in indexes:
            g = gammas[i]
            if g is None:
                continue
            c = self.chain.contracts[i]
            if live:
                oi = book.effective(i)
                change = oi - c.settled if c.has_settled else None
            else:
                oi = c.settled
                change = c.settled - c.prev_settled if c.prev_settled is not None else None
            out.append(Leg(c.strike, c.call, g, oi, book.volume[i] if live else 0, change))
        return out

    def rows(self, expiry: int | None, live: bool, spot: float | None = None) -> list[WireRow]:
        return strike_rows(self.legs(expiry, live, spot), self.spot if spot is None else spot)

    def live_flip(self, spot: float) -> float | None:
        return gamma_flip(self.rows(None, True, spot), spot)
