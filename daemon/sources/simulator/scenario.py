"""Scenario files (YAML): per-symbol market parameters and events at given sim times.

```yaml
start: 2026-03-02T14:30:00Z   # optional; fixed start = byte-identical replays
tick_s: 1                      # model time step (bodies are computed once per tick)
symbols:
  SPY: {spot: 600, vol: 0.14, drift: 0.0, annual_vol: 0.15}
events:
  - {at: 10s, do: cross_flip, symbol: SPY, side: below, gap_pct: 0.4}
  - {at: 20s, do: net_sign, symbol: QQQ, to: negative}
  - {at: 30s, do: block, symbol: IWM, contracts: 20000, right: call, strike: atm}
  - {at: 40s, do: spot, symbol: SPY, move_pct: -1.5}
  - {at: 45s, do: wall, symbol: SPY, wall: call, move_pct: 2}
  - {at: 46s, do: approach, symbol: SPY, level: put_wall, side: above, gap_pct: 0.1}
  - {at: 47s, do: drift, symbol: QQQ, pct: 30, right: call, over_s: 6s}
  - {at: 48s, do: flip_status, symbol: IWM, status: no_boundary, duration: 30s}
  - {at: 49s, do: stale_feed, symbol: SPY, feed: flow_feed, lag: 10m, duration: 30s}
  - {at: 50s, do: fault, kind: error, status: 503, count: 3}
```
Every problem is reported at once with its path (`events[2].contracts: ...`).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from importlib import resources
from pathlib import Path
from typing import Literal

import msgspec

from gex_alertd import bounded_yaml
from gex_alertd.model import FEEDS
from gex_alertd.rules.duration import Duration
from gex_alertd.typedconfig import Problems, convert


class _Strict(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    pass


class SymbolParams(_Strict):
    spot: float | None = None  # opening level; default from the symbol (SPY ~600 ...)
    annual_vol: float | None = None  # spot path volatility (GBM)
    drift: float = 0.0  # annual drift of the spot path
    atm_iv: float | None = None  # implied vol at the money (smile built around it)
    strikes: int = 200  # distinct strikes in the aggregated chain
    oi_scale: float | None = None  # multiplies settled OI
    trades_per_s: float | None = None  # intraday print rate


class _Event(_Strict, tag_field="do"):
    at: Duration  # sim seconds from start


class _SymbolEvent(_Event, kw_only=True):
    symbol: str


class SpotEvent(_SymbolEvent, tag="spot", kw_only=True):
    """Jump the spot path to a level (`to`) or by a percentage (`move_pct`)."""

    to: float | None = None
    move_pct: float | None = None


class CrossFlipEvent(_SymbolEvent, tag="cross_flip", kw_only=True):
    """Move spot to the other side of the live flip (or the given side), `gap_pct` beyond it."""

    side: Literal["above", "below", "other"] = "other"
    gap_pct: float = 0.4


class NetSignEvent(_SymbolEvent, tag="net_sign", kw_only=True):
    """Open enough puts (to negative) or calls (to positive) near spot to flip the net sign."""

    to: Literal["positive", "negative"]
    margin: float = 0.4  # overshoot, as a fraction of the current |net|
    over_s: Duration = Duration(6.0)  # spread the flow over this long (no single huge print)
    width_pct: float = 3.0  # spread across strikes within this % of spot


class BlockEvent(_SymbolEvent, tag="block", kw_only=True):
    """One print of `contracts` at a strike ("atm" = the listed strike nearest spot)."""

    contracts: int
    right: Literal["call", "put"] = "call"
    strike: float | Literal["atm"] = "atm"
    expiry: date | None = None  # yyyy-MM-dd; default the front expiry
    aggressor: Literal["buy", "sell"] = "buy"


class WallEvent(_SymbolEvent, tag="wall", kw_only=True):
    """Move a wall: one opening block at the strike `move_pct` % of spot away, big enough that
    its GEX passes the current wall's by `margin` (a fraction): a `wall_shift`."""

    wall: Literal["call", "put"] = "call"
    move_pct: float = 2.0
    margin: float = 0.5


class ApproachEvent(_SymbolEvent, tag="approach", kw_only=True):
    """Move spot to `gap_pct` % from a level (the flip or a wall), on `side` of it: a
    `level_proximity` entry."""

    level: Literal["flip", "call_wall", "put_wall"] = "flip"
    side: Literal["above", "below"] = "above"
    gap_pct: float = 0.1


class DriftEvent(_SymbolEvent, tag="drift", kw_only=True):
    """Open positions near spot over `over_s` until the live profile is `pct` % of the settled
    GEX (|call| + |put| within `width_pct` of spot) away from it: a `repositioning`."""

    pct: float = 30.0
    right: Literal["call", "put"] = "call"
    over_s: Duration = Duration(6.0)
    width_pct: float = 3.0


class FlipStatusEvent(_SymbolEvent, tag="flip_status", kw_only=True):
    """Withhold the flip (serve `status`, e.g. no_boundary) for `duration` sim seconds: a
    `flip_guard` (unavailable); it comes back afterwards (resolved)."""

    status: str = "insufficient_quote_quality"
    duration: Duration = Duration(30.0)


class StaleFeedEvent(_SymbolEvent, tag="stale_feed", kw_only=True):
    """Serve one `data_as_of` feed `lag` behind the snapshot for `duration` sim seconds: a
    `stale_data` (fires), fresh again afterwards (resolved)."""

    feed: str = "flow_feed"
    lag: Duration = Duration(600.0)
    duration: Duration = Duration(30.0)


class FaultEvent(_Event, tag="fault", kw_only=True):
    """Misbehave on the next `count` requests (or for `duration` sim seconds)."""

    kind: Literal["error", "timeout", "malformed", "rate_limit", "slow"]
    symbol: str | None = None  # None: any symbol
    status: int = 503  # for kind=error
    count: int | None = None
    duration: Duration | None = None
    delay_s: float = 30.0  # for timeout and slow (real seconds)
    retry_after: int = 2  # for rate_limit


Event = (
    SpotEvent
    | CrossFlipEvent
    | NetSignEvent
    | BlockEvent
    | WallEvent
    | ApproachEvent
    | DriftEvent
    | FlipStatusEvent
    | StaleFeedEvent
    | FaultEvent
)


class Scenario(_Strict):
    start: datetime | None = None
    tick_s: float = 1.0
    symbols: dict[str, SymbolParams] = {}
    unknown_symbols: list[str] = []  # served as 404 (besides anything starting with ZZ)
    events: list[Event] = []


class ScenarioError(ValueError):
    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: {len(problems)} problem(s)\n  " + "\n  ".join(problems))


def _check(sc: Scenario, problems: Problems) -> None:
    if sc.tick_s <= 0:
        problems.add("tick_s", f"must be > 0, got {sc.tick_s}")
    for sym, p in sc.symbols.items():
        path = f"symbols.{sym}"
        if p.spot is not None and p.spot <= 0:
            problems.add(f"{path}.spot", f"must be > 0, got {p.spot}")
        for name in ("annual_vol", "atm_iv", "oi_scale", "trades_per_s"):
            v = getattr(p, name)
            if v is not None and v < 0:
                problems.add(f"{path}.{name}", f"must be >= 0, got {v}")
        if p.atm_iv is not None and p.atm_iv == 0:
            problems.add(f"{path}.atm_iv", "must be > 0")
        if not 10 <= p.strikes <= 2000:
            problems.add(f"{path}.strikes", f"must be within 10..2000, got {p.strikes}")
    for i, ev in enumerate(sc.events):
        path = f"events[{i}]"
        if isinstance(ev, SpotEvent) and (ev.to is None) == (ev.move_pct is None):
            problems.add(path, "spot needs exactly one of to, move_pct")
        if isinstance(ev, SpotEvent) and ev.to is not None and ev.to <= 0:
            problems.add(f"{path}.to", f"must be > 0, got {ev.to}")
        if isinstance(ev, CrossFlipEvent) and ev.gap_pct <= 0:
            problems.add(f"{path}.gap_pct", f"must be > 0, got {ev.gap_pct}")
        if isinstance(ev, BlockEvent):
            if ev.contracts <= 0:
                problems.add(f"{path}.contracts", f"must be > 0, got {ev.contracts}")
        if isinstance(ev, WallEvent):
            if ev.move_pct == 0:
                problems.add(f"{path}.move_pct", "must not be 0 (the wall would stay)")
            if ev.margin < 0:
                problems.add(f"{path}.margin", f"must be >= 0, got {ev.margin}")
        if isinstance(ev, ApproachEvent) and ev.gap_pct < 0:
            problems.add(f"{path}.gap_pct", f"must be >= 0, got {ev.gap_pct}")
        if isinstance(ev, DriftEvent):
            for name in ("pct", "width_pct"):
                if getattr(ev, name) <= 0:
                    problems.add(f"{path}.{name}", f"must be > 0, got {getattr(ev, name)}")
        if isinstance(ev, FlipStatusEvent) and ev.status == "available":
            problems.add(f"{path}.status", "a withheld flip needs a status other than available")
        if isinstance(ev, StaleFeedEvent) and ev.feed not in FEEDS:
            problems.add(f"{path}.feed", f"unknown feed {ev.feed!r} (feeds: {', '.join(FEEDS)})")
        if isinstance(ev, NetSignEvent) and ev.margin < 0:
            problems.add(f"{path}.margin", f"must be >= 0, got {ev.margin}")
        if isinstance(ev, FaultEvent):
            if ev.kind == "error" and not 500 <= ev.status <= 599:
                problems.add(f"{path}.status", f"must be a 5xx status, got {ev.status}")
            if ev.count is not None and ev.count < 1:
                problems.add(f"{path}.count", f"must be >= 1, got {ev.count}")
            if ev.retry_after < 1:
                problems.add(f"{path}.retry_after", f"must be >= 1, got {ev.retry_after}")


def parse_scenario(tree: object, source: str = "scenario") -> Scenario:
    problems = Problems()
    if tree is None:
        tree = {}
    if not isinstance(tree, dict):
        raise ScenarioError(source, ["top level: expected a mapping"])
    sc = convert(tree, Scenario, "", problems)
    if sc is not None and not problems:
        _check(sc, problems)
    if problems or sc is None:
        raise ScenarioError(source, list(problems))
    symbols = {k.upper(): v for k, v in sc.symbols.items()}
    events = [
        msgspec.structs.replace(e, symbol=e.symbol.upper())
        if getattr(e, "symbol", None) is not None
        else e
        for e in sc.events
    ]
    start = sc.start
    if start is not None and start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    return msgspec.structs.replace(
        sc,
        start=start,
        symbols=symbols,
        unknown_symbols=[s.upper() for s in sc.unknown_symbols],
        events=sorted(events, key=lambda e: e.at),
    )


def loads_scenario(text: str, source: str = "scenario") -> Scenario:
    try:
        tree = bounded_yaml.parse(text)
    except bounded_yaml.YamlRefused as exc:
        raise ScenarioError(source, exc.problems) from None
    return parse_scenario(tree, source)


DEMO = "demo"


def load_scenario(path: str | Path, base_dir: Path | None = None) -> Scenario:
    """Load a scenario file; `demo` is the packaged demo, relative paths use `base_dir`."""
    if str(path) == DEMO:
        text = resources.files(__package__).joinpath("scenarios/demo.yaml").read_text()
        return loads_scenario(text, "scenario demo")
    p = Path(path)
    if not p.is_absolute() and base_dir is not None:
        p = base_dir / p
    try:
        text = bounded_yaml.read_text(p)
    except bounded_yaml.YamlRefused as exc:
        raise ScenarioError(str(p), exc.problems) from None
    return loads_scenario(text, str(p))
