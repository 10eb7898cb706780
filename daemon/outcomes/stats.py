"""Summaries of outcome moves, a seeded bootstrap, and the random-moment baseline. Pure.

Determinism: every random draw comes from a generator seeded with (seed, what it is for), so
the same seed gives the same intervals and the same baseline moments on every run, and adding
a rule or a horizon does not change another one's figures.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import msgspec
import numpy as np

BOOTSTRAP_RESAMPLES = 2000
CONFIDENCE = 0.95
_CHUNK_CELLS = 1 << 20  # resampled values held at once (8 MB)


def rng_for(seed: int, *names: str) -> np.random.Generator:
    """A generator for one purpose: seeded by the run's seed and stable hashes of the names."""
    return np.random.default_rng([seed, *(zlib.crc32(n.encode()) for n in names)])


def bootstrap_mean_ci(
    values: np.ndarray, rng: np.random.Generator, resamples: int = BOOTSTRAP_RESAMPLES
) -> tuple[float, float] | None:
    """Percentile bootstrap interval (95 %) of the mean; None below two values."""
    n = len(values)
    if n < 2:
        return None
    means = np.empty(resamples)
    rows = max(1, _CHUNK_CELLS // n)
    for at in range(0, resamples, rows):
        k = min(rows, resamples - at)
        means[at : at + k] = values[rng.integers(0, n, size=(k, n))].mean(axis=1)
    tail = (1.0 - CONFIDENCE) / 2.0 * 100.0
    lo, hi = np.percentile(means, [tail, 100.0 - tail])
    return float(lo), float(hi)


class Summary(msgspec.Struct, frozen=True):
    n: int
    hit_rate: float | None = None  # share of moves > 0
    mean: float | None = None
    median: float | None = None
    ci_low: float | None = None  # 95 % bootstrap interval of the mean
    ci_high: float | None = None
    mean_abs: float | None = None


def summarize(values: Sequence[float] | np.ndarray, rng: np.random.Generator) -> Summary:
    v = np.asarray(values, dtype=np.float64)
    if len(v) == 0:
        return Summary(0)
    ci = bootstrap_mean_ci(v, rng)
    return Summary(
        n=len(v),
        hit_rate=float(np.mean(v > 0)),
        mean=float(v.mean()),
        median=float(np.median(v)),
        ci_low=None if ci is None else ci[0],
        ci_high=None if ci is None else ci[1],
        mean_abs=float(np.abs(v).mean()),
    )


StreamKey = tuple[str, str | None]


class Moment(NamedTuple):
    stream: StreamKey
    at_ms: int
    sign: int
    hour: int  # ET hour of day


def baseline_moments(
    alerts: Sequence[Moment],
    candidates: Mapping[StreamKey, tuple[np.ndarray, np.ndarray]],
    exclude: Mapping[StreamKey, np.ndarray],
    n: int,
    rng: np.random.Generator,
) -> list[Moment]:
    """`n` random moments matched to `alerts`: each draw takes a random alert's stream, ET hour
    and direction, and a random stored snapshot of that stream in that hour that is not any
    alert's own moment (`exclude`: the as_of of every alert in the report, per stream).
    `candidates`: per stream, its snapshot times and their ET hours. Draws whose stream and
    hour have no candidate are skipped, so fewer than `n` may come back."""
    if not alerts or n <= 0:
        return []
    pools: dict[tuple[StreamKey, int], np.ndarray] = {}
    out: list[Moment] = []
    for pick in rng.integers(0, len(alerts), size=n):
        a = alerts[int(pick)]
        key = (a.stream, a.hour)
        pool = pools.get(key)
        if pool is None:
            t, hours = candidates.get(a.stream, (np.zeros(0, np.int64), np.zeros(0, np.int64)))
            pool = t[hours == a.hour]
            own = exclude.get(a.stream)
            if own is not None and len(own):
                pool = pool[~np.isin(pool, own)]
            pools[key] = pool
        if len(pool):
            out.append(Moment(a.stream, int(pool[int(rng.integers(0, len(pool)))]), a.sign, a.hour))
    return out
