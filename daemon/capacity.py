"""Capacity: the poll rate the watchlist asks for against the key's request budget, and the
interval each watch target will really get. Pure config math: no I/O, no clock, never raises on
a config that `config.parse` accepted.

The model is the poll engine's: a due-time queue served by a fixed worker pool, most overdue
target first, a late target rescheduled at `start of its poll + interval`. Under overload every
target is then served the same lag `L` after it falls due, so target `i` is polled every
`I_i + L`, where `L` solves

    sum_i 1 / (I_i + L) = budget per second

and `L = 0` when the demand `sum_i 1 / I_i` fits the budget. Not modelled: retries after errors
(they spend budget too), jitter (a delay per poll, not a change of rate), a Retry-After the
provider imposes, the workers' own pace (`max_concurrency` / request latency, unknown offline)
and several daemons sharing one key (each holds its own budget).

Polling faster than the source's cache (the provider caches Flow GEX ~15 s) mostly returns the
snapshot already seen: those targets are counted too, as a milder note.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import msgspec

if TYPE_CHECKING:
    from gex_alertd.config import Config, WatchTarget

BUDGET_SETTING = "source.requests_per_min"
INTERVAL_SETTING = "watch.interval_s"
# shared/flowgex-api.md: "the provider caches this endpoint for about 15 s"
PROVIDER_CACHE_S = 15.0
# the lag is solved to this relative precision (bisection stops when the bracket is this narrow)
_REL_TOL = 1e-12
_MAX_STEPS = 200
_NAMED = 3  # target keys named in a note before "and N more"


class Capacity(msgspec.Struct, frozen=True, kw_only=True):
    targets: int
    demand_per_min: float  # requests/min the configured intervals ask for
    budget_per_min: float  # source.requests_per_min
    lag_s: float  # the common delay added to every interval; 0 when the budget suffices
    overloaded: bool
    requested: dict[str, float]  # target key -> configured interval_s
    achieved: dict[str, float]  # target key -> interval it will get (requested + lag_s)
    cache_s: float  # the source's response cache; 0 = none
    faster_than_cache: tuple[str, ...]  # keys whose achieved interval is below cache_s

    @property
    def utilisation(self) -> float:
        """Demand as a fraction of the budget (above 1 means overloaded)."""
        return self.demand_per_min / self.budget_per_min if self.budget_per_min > 0 else math.inf


def _rate(interval_s: float) -> float:
    # an interval that is not > 0 (NaN) asks for nothing we could schedule; inf asks for 0
    return 1.0 / interval_s if interval_s > 0 else 0.0


def _total(rates: Iterable[float]) -> float:
    """Exact sum of rates (all >= 0): an overflow is simply infinite demand."""
    try:
        return math.fsum(rates)
    except OverflowError:
        return math.inf


def solve_lag(counts: dict[float, int], capacity_per_s: float) -> float:
    """The `L >= 0` with `sum n_I / (I + L) = capacity_per_s` over intervals `I` taken by `n_I`
    targets; 0 when the demand already fits. Bisection: the sum falls strictly with `L`, and at
    `L = n / capacity` it is below `capacity`, so the root is bracketed."""
    terms = [(i, n) for i, n in counts.items() if _rate(i) > 0]

    def rate_at(lag: float) -> float:
        return _total(n / (i + lag) for i, n in terms)

    if not terms or not rate_at(0.0) > capacity_per_s:
        return 0.0
    if not capacity_per_s > 0:
        return math.inf  # no budget at all: nothing is ever polled
    lo, hi = 0.0, sum(n for _i, n in terms) / capacity_per_s
    for _ in range(_MAX_STEPS):
        mid = (lo + hi) / 2
        if rate_at(mid) > capacity_per_s:
            lo = mid
        else:
            hi = mid
        if hi - lo <= _REL_TOL * hi:
            break
    return (lo + hi) / 2


def plan(
    targets: Sequence[WatchTarget], requests_per_min: float, *, cache_s: float = PROVIDER_CACHE_S
) -> Capacity:
    """What each target will get from a budget of `requests_per_min` (the whole key's)."""
    requested = {t.key: t.interval_s for t in targets}
    demand_per_s = _total(_rate(i) for i in requested.values())
    capacity_per_s = requests_per_min / 60
    lag = solve_lag(dict(Counter(requested.values())), capacity_per_s)
    achieved = {key: i + lag for key, i in requested.items()}
    return Capacity(
        targets=len(requested),
        demand_per_min=demand_per_s * 60,
        budget_per_min=requests_per_min,
        lag_s=lag,
        overloaded=lag > 0,
        requested=requested,
        achieved=achieved,
        cache_s=cache_s,
        faster_than_cache=tuple(k for k, a in achieved.items() if a < cache_s),
    )


def source_cache_s(cfg: Config) -> float:
    """Wall seconds the source serves one snapshot: the provider's ~15 s, or the embedded
    simulator's `cache_s` (simulated seconds, run `speed` times faster than the wall)."""
    if cfg.source.kind == "simulator":
        sim = cfg.source.simulator
        return sim.cache_s / sim.speed
    return PROVIDER_CACHE_S


def for_config(cfg: Config) -> Capacity:
    return plan(cfg.watch.entries(), cfg.source.requests_per_min, cache_s=source_cache_s(cfg))


# --- words -----------------------------------------------------------------------------------


def _num(x: float) -> str:
    """1,000 / 17.5 / 0.25: thousands separated, about three significant digits."""
    if not math.isfinite(x):
        return str(x)
    if abs(x) >= 100:
        return f"{round(x):,}"
    return f"{x:.3g}"


def _secs(s: float) -> str:
    """`1,000 s (~17 min)`: seconds, and minutes or hours once they read better."""
    text = f"{_num(s)} s"
    if math.isfinite(s) and s >= 7200:
        return f"{text} (~{_num(s / 3600)} h)"
    if math.isfinite(s) and s >= 120:
        return f"{text} (~{round(s / 60):,} min)"
    return text


def _one_value(values: Sequence[float]) -> bool:
    """All the same, as printed."""
    return _num(min(values)) == _num(max(values))


def _span(values: Sequence[float], approx: bool = False) -> str:
    """`15 s`, or `1–30 s` when they differ."""
    tilde = "~" if approx else ""
    if _one_value(values):
        return tilde + _secs(values[0])
    return f"{tilde}{_num(min(values))}–{_secs(max(values))}"


def _targets(n: int) -> str:
    return f"{n:,} target" + ("" if n == 1 else "s")


def _named(keys: Sequence[str]) -> str:
    shown = ", ".join(keys[:_NAMED])
    return shown + (f" and {len(keys) - _NAMED:,} more" if len(keys) > _NAMED else "")


def describe(c: Capacity) -> str:
    """One sentence: what the watchlist asks for, what the budget allows, what each target gets."""
    if not c.targets:
        return "no watch targets: nothing will be polled"
    asks = "asks" if c.targets == 1 else "ask"
    requested = list(c.requested.values())
    if not c.overloaded:
        each = "polled" if c.targets == 1 else "each polled"
        return (
            f"{_targets(c.targets)} {asks} for {_num(c.demand_per_min)} requests/min of the "
            f"{_num(c.budget_per_min)}/min budget ({BUDGET_SETTING}, "
            f"{_num(100 * c.utilisation)}% used): {each} every {_span(requested)} as configured"
        )
    achieved = list(c.achieved.values())
    if c.targets == 1:
        who = "the target"
    else:
        who = "each target" if _one_value(achieved) else "targets"
    return (
        f"{_targets(c.targets)} {asks} for {_num(c.demand_per_min)} requests/min; the key "
        f"allows {_num(c.budget_per_min)}/min ({BUDGET_SETTING}): {who} will be polled every "
        f"{_span(achieved, approx=True)} instead of {_span(requested)}; "
        f"raise {BUDGET_SETTING} (if the plan allows) or {INTERVAL_SETTING}, "
        "or watch fewer symbols"
    )


def cache_note(c: Capacity) -> str | None:
    """The milder news: targets polled faster than the source refreshes; None when there are
    none (or when the source does not cache)."""
    keys = c.faster_than_cache
    if not keys or c.cache_s <= 0:
        return None
    got = [c.achieved[k] for k in keys]
    return (
        f"{len(keys):,} of {_targets(c.targets)} ({_named(keys)}) will be polled every "
        f"{_span(got)}, faster than the source's ~{_secs(c.cache_s)} cache: most of those polls "
        f"return the snapshot already seen and spend the request budget for nothing "
        f"({INTERVAL_SETTING})"
    )


def log_fields(c: Capacity) -> dict[str, object]:
    """Fields for one structured start-up log line: totals and the extremes, never a dump of
    every target (there may be thousands)."""
    fields: dict[str, object] = {
        "targets": c.targets,
        "demand_per_min": round(c.demand_per_min, 3),
        "budget_per_min": c.budget_per_min,
        "utilisation": round(c.utilisation, 4),
        "overloaded": c.overloaded,
        "lag_s": round(c.lag_s, 3),
        "faster_than_cache": len(c.faster_than_cache),
        "cache_s": c.cache_s,
    }
    if c.achieved:
        # ties broken by key, so the same config always logs the same targets
        fastest = min(c.achieved, key=lambda k: (c.achieved[k], k))
        slowest = max(c.achieved, key=lambda k: (c.achieved[k], k))
        fields |= {
            "fastest_target": fastest,
            "fastest_interval_s": c.requested[fastest],
            "fastest_achieved_s": round(c.achieved[fastest], 3),
            "slowest_target": slowest,
            "slowest_interval_s": c.requested[slowest],
            "slowest_achieved_s": round(c.achieved[slowest], 3),
        }
    return fields
