"""`gex-alertd outcomes`: the outcome report over stored history (README "Outcome
statistics"). Reads only; sends nothing."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import click
from rich.console import Console

from gex_alertd import store
from gex_alertd.cli_redis import run_on_redis
from gex_alertd.commands import CONFIG_OPTION, load_or_exit
from gex_alertd.config import Config
from gex_alertd.connections import open_client
from gex_alertd.model import AlertEvent, as_ms
from gex_alertd.ops.calendar_load import CalendarUnavailable, export
from gex_alertd.ops.calendar_table import MAX_SPAN_DAYS, NEW_YORK
from gex_alertd.outcomes import alerts as sources
from gex_alertd.outcomes.horizons import Horizon, Sessions, parse_horizons
from gex_alertd.outcomes.paths import SpotPath, read_path
from gex_alertd.outcomes.report import (
    BASELINE_N,
    Distributions,
    Report,
    alert_ms,
    compute_report,
    regime_table,
    stream_of,
    table,
    to_csv,
    to_json,
)
from gex_alertd.outcomes.stats import StreamKey
from gex_alertd.replay import DAY_MS, parse_targets, parse_time
from gex_alertd.rules.duration import parse_duration

MAX_WINDOW = timedelta(days=MAX_SPAN_DAYS)


@dataclass(frozen=True)
class ReportOptions:
    source: str  # live | replay | a JSONL path
    flt: sources.Filter
    targets: list[StreamKey]
    horizons: list[Horizon]
    seed: int
    max_gap_s: float
    baseline_n: int


async def build_report(
    cfg: Config, opts: ReportOptions, err: Console
) -> tuple[Report, Distributions]:
    def bad(where: str, msg: str) -> None:
        err.print(f"[yellow]skipped[/] {where}: {msg}", markup=True, highlight=False)

    redis = open_client(cfg.redis, client_name="gex-alertd-outcomes")
    try:
        stored = await store.stream_symbols(redis)
        targets = opts.targets or stored
        if opts.flt.symbols:
            targets = [t for t in targets if t[0] in opts.flt.symbols]
        events: list[AlertEvent]
        if opts.source == "live":
            events = await sources.live_alerts(redis, {t[0] for t in targets}, opts.flt, bad)
        elif opts.source == "replay":
            events = await sources.replayed_alerts(
                cfg.redis, list(cfg.rules), targets, opts.flt, bad
            )
        else:
            events = sources.file_alerts(Path(opts.source), opts.flt, bad)
        streams = set(stored)
        wanted = set(targets) | {stream_of(ev, streams) for ev in events}
        lo, hi = opts.flt.start_ms, opts.flt.end_ms
        paths: dict[StreamKey, SpotPath] = {}
        # a day either side: the close horizon and the pre-alert window reach outside the range
        read_lo = None if lo is None else lo - DAY_MS
        read_hi = None if hi is None else hi + DAY_MS
        for sym, exp in sorted(wanted, key=lambda k: (k[0], k[1] or "")):
            paths[(sym, exp)] = await read_path(redis, sym, exp, read_lo, read_hi)
    finally:
        await redis.aclose()
    table = await export(*_days_of(events, paths))
    return compute_report(
        events,
        paths,
        opts.horizons,
        seed=opts.seed,
        max_gap_s=opts.max_gap_s,
        # a window still running is left out: its figures would change (status `open`)
        now_ms=as_ms(datetime.now(UTC)),
        settle_ms=int(cfg.outcomes.settle * 1000),  # as the live duty judges it
        baseline_n=opts.baseline_n,
        window=(lo, hi),
        sessions=Sessions(lambda: table),
    )


def _days_of(events: list[AlertEvent], paths: dict[StreamKey, SpotPath]) -> tuple[date, date]:
    """The ET days the report measures on (alerts and the baseline's moments, from the paths),
    for the NYSE table; at most its longest window, the latest days (older ones: no session)."""
    times = [alert_ms(ev) for ev in events]
    for path in paths.values():
        if len(path.t):
            times += [int(path.t[0]), int(path.t[-1])]
    now = datetime.now(UTC)
    days = [datetime.fromtimestamp(ms / 1000, UTC).astimezone(NEW_YORK).date() for ms in times]
    last = max(days, default=now.date()) + timedelta(days=1)
    first = max(min(days, default=now.date()) - timedelta(days=1), last - MAX_WINDOW)
    return first, last


def _open(report: Report) -> str:
    """The footnote's count of outcomes whose window has not ended yet (none: nothing)."""
    n = sum(r.open for r in report.rows)
    return f", and {n} whose window has not ended yet" if n else ""


def _names(values: tuple[str, ...]) -> frozenset[str]:
    return frozenset(x.strip() for v in values for x in v.split(",") if x.strip())


# `--baseline`: its draws are arrays of this length (100 billion asked for 745 GiB: a traceback)
MAX_BASELINE = 100_000


@click.command()
@CONFIG_OPTION
@click.option("--from", "start", metavar="T", help="Alerts from: ISO time, date, or 7d ago.")
@click.option(
    "--to",
    "end",
    metavar="T",
    help="Alerts up to (inclusive), same formats; a date: its whole day.",
)
@click.option("--rules", multiple=True, metavar="NAME[,NAME]", help="Only these rules.")
@click.option("--symbols", multiple=True, metavar="SYM[,SYM]", help="SPY,QQQ or SPX:2026-05-15.")
@click.option("--horizons", metavar="H[,H]", help="5m,30m,close (default: outcomes.horizons).")
@click.option(
    "--alerts", "source", default="live", show_default=True, metavar="live|replay|FILE",
    help="live: fired alerts (outbox and stored outcomes); replay: the configured rules over "
    "the stored streams; FILE: a `gex-alertd replay --out` JSONL file.",
)  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="The whole report as JSON on stdout.")
@click.option("--csv", "as_csv", is_flag=True, help="The per rule and horizon rows as CSV.")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), help="Write a PNG.")
@click.option("--seed", type=int, default=0, show_default=True, help="Bootstrap and baseline.")
@click.option("--max-gap", default="10m", show_default=True, help="A longer hole is a gap.")
@click.option(
    "--baseline", "baseline_n", type=click.IntRange(0, MAX_BASELINE), default=BASELINE_N,
    show_default=True, help="Random moments per rule.",
)  # fmt: skip
def outcomes(
    config_path: Path,
    start: str | None,
    end: str | None,
    rules: tuple[str, ...],
    symbols: tuple[str, ...],
    horizons: str | None,
    source: str,
    as_json: bool,
    as_csv: bool,
    plot: Path | None,
    seed: int,
    max_gap: str,
    baseline_n: int,
) -> None:
    """What spot did after each alert, per rule and horizon, against random moments."""
    cfg = load_or_exit(config_path)
    if as_json and as_csv:
        raise click.UsageError("--json and --csv are alternatives")
    if source not in ("live", "replay") and not Path(source).is_file():
        raise click.BadParameter(f"no such file {source!r}", param_hint="--alerts")
    try:
        hs = parse_horizons(horizons if horizons is not None else cfg.outcomes.horizons)
        gap = float(parse_duration(max_gap))
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    targets = parse_targets(symbols)
    start_ms = parse_time(start) if start else None
    end_ms = parse_time(end, end=True) if end else None
    if start_ms is not None and end_ms is not None and start_ms > end_ms:
        raise click.BadParameter("--from is after --to")
    opts = ReportOptions(
        source=source,
        flt=sources.Filter(
            rules=_names(rules),
            symbols=frozenset(t[0] for t in targets),
            start_ms=start_ms,
            end_ms=end_ms,
        ),
        targets=targets,
        horizons=hs,
        seed=seed,
        max_gap_s=gap,
        baseline_n=baseline_n,
    )
    # soft_wrap: a file:line or a path stays on one line, however long (copied, grepped)
    console, err = Console(), Console(stderr=True, soft_wrap=True)
    try:
        report, dist = run_on_redis(build_report(cfg, opts, err), cfg.redis, targets)
    except (OSError, CalendarUnavailable) as exc:
        raise click.ClickException(f"outcomes failed: {exc}") from None
    if as_json:
        sys.stdout.buffer.write(to_json(report) + b"\n")
    elif as_csv:
        sys.stdout.write(to_csv(report))
    else:
        tables = (table(report), regime_table(report))
        # at their own width, never cut to the terminal's (or a pipe's 80 columns): a cell
        # shown as '-0.…' is a figure lost, a wrapped line is not
        wide = console.options.update_width(10_000)
        console.width = max(
            console.width, *(console.measure(t, options=wide).maximum for t in tables)
        )
        for t in tables:
            console.print(t)
        console.print(
            f"{len(report.alerts)} alerts; dir: s(igned in the alert's direction) or p(lain); "
            f"only `ok` outcomes count (gaps over {gap:g} s are left out{_open(report)}). On "
            "the simulator these figures describe the simulator, not markets.",
            highlight=False,
        )
    sys.stdout.flush()  # the report before the plot's line on stderr
    if plot is not None:
        from gex_alertd.outcomes.plot import PlotUnavailable
        from gex_alertd.outcomes.plot import plot as draw

        try:
            draw(report, dist, plot)
        except PlotUnavailable as exc:
            raise click.ClickException(str(exc)) from None
        err.print(f"plot written to {plot}", highlight=False)
    sys.stdout.flush()
