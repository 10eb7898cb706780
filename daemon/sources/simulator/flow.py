"""Intraday trade flow and the effective OI it implies.

Each print has a size and a price against a simulated NBBO. Like the provider's OI simulator,
we do not know whether a print opened or closed a position: it is inferred from where the
price sits in the quote (at the ask: a buyer, taken as opening; at the bid: a seller, taken as
closing; in between: leaning to the nearer side) with a confidence c, and the expected OI
change is `size * (2c - 1)` signed by the inferred direction. A print larger than the
contract's current OI can only be opening (c = 1).
effective OI = max(0, settled OI + the sum of inferred changes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from gex_alertd.sources.simulator.pricing import bs_price

Aggressor = Literal["buy", "sell"]


@dataclass(slots=True, frozen=True)
class Quote:
    bid: float
    ask: float

    @property
    def mid(self) -> float:
        return (self.bid + self.ask) / 2.0


@dataclass(slots=True, frozen=True)
class Print:
    contract: int
    size: int
    price: float
    quote: Quote


@dataclass(slots=True, frozen=True)
class Inference:
    opening: bool
    confidence: float  # probability the inferred direction is right, 0.5..1

    def oi_change(self, size: int) -> float:
        sign = 1.0 if self.opening else -1.0
        return sign * size * (2.0 * self.confidence - 1.0)


def nbbo(call: bool, spot: float, strike: float, t: float, vol: float, r: float) -> Quote:
    """A quote around the Black-Scholes value: wider in relative terms for cheap options."""
    mid = max(0.01, bs_price(call, spot, strike, t, vol, r))
    half = max(0.005, min(0.5, mid * 0.02 + 0.01))
    bid = max(0.0, round(mid - half, 2))
    ask = max(bid + 0.01, round(mid + half, 2))
    return Quote(bid, ask)


def print_price(quote: Quote, aggressor: Aggressor, u: float) -> float:
    """Where an aggressor's print lands: at the touch most of the time, else inside."""
    if u < 0.6:
        return quote.ask if aggressor == "buy" else quote.bid
    frac = (u - 0.6) / 0.4  # 0..1 from the touch towards the mid
    if aggressor == "buy":
        return round(quote.ask - frac * (quote.ask - quote.mid), 2)
    return round(quote.bid + frac * (quote.mid - quote.bid), 2)


def infer(price: float, quote: Quote, size: int, current_oi: float) -> Inference:
    if size > current_oi:
        return Inference(True, 1.0)  # more contracts than exist: it must have opened
    if price >= quote.ask:
        return Inference(True, 0.9)
    if price <= quote.bid:
        return Inference(False, 0.9)
    half = (quote.ask - quote.bid) / 2.0
    lean = (price - quote.mid) / half if half > 0 else 0.0  # -1 at bid .. +1 at ask
    return Inference(lean >= 0.0, 0.5 + 0.4 * abs(lean))


class FlowBook:
    """Per contract: the inferred intraday OI change and the day's volume."""

    def __init__(self, settled: list[int]):
        self.settled = settled
        self.change = [0.0] * len(settled)
        self.volume = [0] * len(settled)

    def effective(self, i: int) -> int:
        return max(0, round(self.settled[i] + self.change[i]))

    def apply(self, p: Print) -> Inference:
        inf = infer(p.price, p.quote, p.size, self.effective(p.contract))
        i = p.contract
        # an inferred close can only remove what is there: OI never goes below zero
        self.change[i] = max(-float(self.settled[i]), self.change[i] + inf.oi_change(p.size))
        self.volume[p.contract] += p.size
        return inf
