"""The outcome report: per rule and horizon, the alerts' moves against matched random moments.
Pure: alerts and spot paths in, a `Report` out; rendering as a rich table, JSON or CSV.

Only `ok` outcomes count (README "Outcome statistics"): `gaps` says how many were left out for
a hole in the stored history, `open` how many for a window that has not ended yet (at the
report's `now_ms`), `no_session` how many had no close to measure to.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

import msgspec
import numpy as np

from gex_alertd.model import AlertEvent, as_ms
from gex_alertd.outcomes.horizons import Horizon, Sessions, et_hours
from gex_alertd.outcomes.measure import (
    DEFAULT_MAX_GAP_S,
    Outcome,
    direction_sign,
    measure,
    measure_alert,
)
from gex_alertd.outcomes.paths import SpotPath
from gex_alertd.outcomes.regime import RegimeVol, regime_vol
from gex_alertd.outcomes.stats import (
    Moment,
    StreamKey,
    Summary,
    baseline_moments,
    rng_for,
    summarize,
)

if TYPE_CHECKING:  # rich only where a table is rendered: the daemon's outcome duty imports
    # this module and never renders one (rich and pygments are ~3 MB of a running daemon)
    from rich.table import Table

BASELINE_N = 1000


def alert_ms(event: AlertEvent) -> int:
    return as_ms(datetime.fromisoformat(event.as_of.replace("Z", "+00:00")))


def stream_of(event: AlertEvent, streams: Sequence[StreamKey] | set[StreamKey]) -> StreamKey:
    """The stream an alert was evaluated on: its expiry-filtered stream when one is stored,
    else the symbol's own (an unfiltered stream's alerts carry the served expiry)."""
    key = (event.symbol, event.expiry)
    return key if event.expiry and key in streams else (event.symbol, None)


class AlertOutcomes(msgspec.Struct, frozen=True):
    id: str
    rule: str
    type: str
    symbol: str
    expiry: str | None
    as_of: str
    outcomes: dict[str, Outcome]


class Row(msgspec.Struct, frozen=True):
    rule: str
    type: str
    horizon: str
    signed: bool
    alerts: Summary
    baseline: Summary
    gaps: int
    no_session: int
    held_rate: float | None = None  # level rules: share of counted alerts whose level held
    vol_ratio: float | None = None  # mean vol after / mean vol before (counted alerts)
    open: int = 0  # windows not ended at the report's time: left out, their figures would move


class Report(msgspec.Struct, frozen=True):
    seed: int
    horizons: list[str]
    max_gap_s: float
    rows: list[Row]
    regime: list[RegimeVol]
    alerts: list[AlertOutcomes]


@dataclass
class Distributions:
    """The moves behind each row (rule, horizon): for the plot, never serialized."""

    alerts: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    baseline: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)


def compute_report(
    events: Sequence[AlertEvent],
    paths: Mapping[StreamKey, SpotPath],
    horizons: list[Horizon],
    *,
    seed: int = 0,
    max_gap_s: float = DEFAULT_MAX_GAP_S,
    now_ms: int | None = None,
    settle_ms: int = 0,
    baseline_n: int = BASELINE_N,
    window: tuple[int | None, int | None] = (None, None),
    sessions: Sessions,
) -> tuple[Report, Distributions]:
    """`paths`: every stream's spot path (wider than `window` so horizons can run past its
    end); `window`: the report's [from, to] in ms, which also bounds the baseline moments;
    `sessions`: the NYSE closes (horizons end at or are capped at the close)."""
    streams = set(paths)
    per_alert: list[AlertOutcomes] = []
    by_rule: dict[str, list[tuple[AlertEvent, StreamKey, int, dict[str, Outcome]]]] = defaultdict(
        list
    )
    for ev in sorted(events, key=lambda e: (alert_ms(e), e.id)):
        key = stream_of(ev, streams)
        at = alert_ms(ev)
        path = paths.get(key, SpotPath.empty())
        close = sessions.close_ms(at)
        outs = measure_alert(path, ev, at, horizons, close, max_gap_s, now_ms, settle_ms)
        per_alert.append(
            AlertOutcomes(ev.id, ev.rule, ev.type, ev.symbol, ev.expiry, ev.as_of, outs)
        )
        by_rule[ev.rule].append((ev, key, at, outs))
    candidates = _candidates(paths, window)
    exclude: dict[StreamKey, list[int]] = defaultdict(list)
    for items in by_rule.values():
        for _ev, key, at, _o in items:
            exclude[key].append(at)
    excl = {k: np.asarray(v, dtype=np.int64) for k, v in exclude.items()}
    rows: list[Row] = []
    dist = Distributions()
    for rule in sorted(by_rule):
        items = by_rule[rule]
        moments = [
            Moment(key, at, direction_sign(ev), int(et_hours(np.array([at]))[0]))
            for ev, key, at, _o in items
        ]
        base = baseline_moments(
            moments, candidates, excl, baseline_n, rng_for(seed, "baseline", rule)
        )
        for h in horizons:
            row = _row(
                rule, items, h, base, paths, sessions, seed, max_gap_s, dist,
                now_ms=now_ms, settle_ms=settle_ms,
            )  # fmt: skip
            rows.append(row)
    regime = [
        regime_vol(_clip(paths[k], window), k[0], k[1], max_gap_s)
        for k in sorted(paths, key=lambda k: (k[0], k[1] or ""))
    ]
    report = Report(seed, [h.label for h in horizons], max_gap_s, rows, regime, per_alert)
    return report, dist


def _clip(path: SpotPath, window: tuple[int | None, int | None]) -> SpotPath:
    lo, hi = window
    a = 0 if lo is None else int(np.searchsorted(path.t, lo, side="left"))
    b = len(path) if hi is None else int(np.searchsorted(path.t, hi, side="right"))
    return SpotPath(path.t[a:b], path.spot[a:b], path.net[a:b])


def _candidates(
    paths: Mapping[StreamKey, SpotPath], window: tuple[int | None, int | None]
) -> dict[StreamKey, tuple[np.ndarray, np.ndarray]]:
    out = {}
    for key, path in paths.items():
        t = _clip(path, window).t
        out[key] = (t, et_hours(t))
    return out


def _row(
    rule: str,
    items: list[tuple[AlertEvent, StreamKey, int, dict[str, Outcome]]],
    h: Horizon,
    base: list[Moment],
    paths: Mapping[StreamKey, SpotPath],
    sessions: Sessions,
    seed: int,
    max_gap_s: float,
    dist: Distributions,
    *,
    now_ms: int | None,
    settle_ms: int,
) -> Row:
    outs = [o[h.label] for _e, _k, _a, o in items]
    counted = [o for o in outs if o.counted]
    moves = np.array([o.move_pct for o in counted], dtype=np.float64)
    base_moves = []
    for m in base:
        o = measure(
            paths[m.stream], m.at_ms, h, close_ms=sessions.close_ms(m.at_ms), sign=m.sign,
            max_gap_s=max_gap_s, now_ms=now_ms, settle_ms=settle_ms,
        )  # fmt: skip
        if o.counted:
            base_moves.append(o.move_pct)
    bm = np.array(base_moves, dtype=np.float64)
    dist.alerts[(rule, h.label)] = moves
    dist.baseline[(rule, h.label)] = bm
    held = [o.held for o in counted if o.held is not None]
    after = [o.vol_after_pct for o in counted if o.vol_after_pct is not None]
    before = [o.vol_before_pct for o in counted if o.vol_before_pct]
    first = items[0][0]
    return Row(
        rule=rule,
        type=first.type,
        horizon=h.label,
        signed=any(direction_sign(e) for e, _k, _a, _o in items),
        alerts=summarize(moves, rng_for(seed, "alerts", rule, h.label)),
        baseline=summarize(bm, rng_for(seed, "base", rule, h.label)),
        gaps=sum(o.status == "gap" for o in outs),
        no_session=sum(o.status == "no_session" for o in outs),
        open=sum(o.status == "open" for o in outs),
        held_rate=float(np.mean(held)) if held else None,
        vol_ratio=float(np.mean(after) / np.mean(before)) if after and before else None,
    )


# --- rendering ------------------------------------------------------------------------------


def _pct(x: float | None, signed: bool = True) -> str:
    if x is None:
        return "-"
    return f"{x:+.3f}" if signed else f"{x:.3f}"


def _share(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def table(report: Report) -> Table:
    """Moves in %; `dir` s(igned) or p(lain); `base` the random moments' figures."""
    from rich import box
    from rich.table import Table

    t = Table(title=f"Alert outcomes (moves in %, seed {report.seed})", box=box.SIMPLE_HEAD)
    widest = max((len(r.rule) for r in report.rows), default=4)
    t.add_column("rule", min_width=min(widest, 24))
    t.add_column("horizon", min_width=5)
    t.add_column("dir", min_width=3)
    for name in (
        "n", "hit", "mean", "median", "95% CI", "base n", "base hit", "base mean", "held",
        "vol a/b", "gaps",
    ):  # fmt: skip
        t.add_column(name, justify="right", no_wrap=True)
    for r in report.rows:
        a, b = r.alerts, r.baseline
        ci = "-" if a.ci_low is None else f"{a.ci_low:+.2f}..{a.ci_high:+.2f}"
        t.add_row(
            r.rule, r.horizon, "s" if r.signed else "p", str(a.n), _share(a.hit_rate),
            _pct(a.mean), _pct(a.median), ci, str(b.n), _share(b.hit_rate), _pct(b.mean),
            _share(r.held_rate), "-" if r.vol_ratio is None else f"{r.vol_ratio:.2f}",
            str(r.gaps),
        )  # fmt: skip
    return t


def regime_table(report: Report) -> Table:
    from rich import box
    from rich.table import Table

    t = Table(title="Realized intraday vol by net GEX sign (annualized %)", box=box.SIMPLE_HEAD)
    for name in ("symbol", "vol +GEX", "hours +", "vol -GEX", "hours -"):
        t.add_column(name, justify="left" if name == "symbol" else "right")
    for g in report.regime:
        name = g.symbol + (f":{g.expiry}" if g.expiry else "")
        t.add_row(
            name, _pct(g.positive_vol_pct, False), f"{g.positive_hours:.1f}",
            _pct(g.negative_vol_pct, False), f"{g.negative_hours:.1f}",
        )  # fmt: skip
    return t


def to_json(report: Report) -> bytes:
    return msgspec.json.encode(report)


CSV_COLUMNS = (
    "rule", "type", "horizon", "signed", "n", "hit_rate", "mean", "median", "ci_low", "ci_high",
    "mean_abs", "baseline_n", "baseline_hit_rate", "baseline_mean", "baseline_median",
    "baseline_mean_abs", "held_rate", "vol_ratio", "gaps", "no_session", "open",
)  # fmt: skip


def to_csv(report: Report) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for r in report.rows:
        a, b = r.alerts, r.baseline
        w.writerow(
            [
                r.rule,
                r.type,
                r.horizon,
                r.signed,
                a.n,
                a.hit_rate,
                a.mean,
                a.median,
                a.ci_low,
                a.ci_high,
                a.mean_abs,
                b.n,
                b.hit_rate,
                b.mean,
                b.median,
                b.mean_abs,
                r.held_rate,
                r.vol_ratio,
                r.gaps,
                r.no_session,
                r.open,
            ]
        )
    return buf.getvalue()
