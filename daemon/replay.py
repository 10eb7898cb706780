"""`gex-alertd replay`: a backtest of the configured rules over stored streams or a JSONL file.

The command: options, the run (`replayer.Replayer` over `history` inputs, stored streams through
`replay_streams`, in worker processes when large), the summary, and `--send`. Live state keys
and the outbox are never touched unless `--send` enqueues the alerts (`enqueue_once.EnqueueOnce`
with the live path's per-alert dedup keys, so an alert the daemon already sent is not sent again).
Replaying a window starts with empty state at `--from`, so the first snapshot of each stream
never fires, exactly as for a new daemon.
"""

from __future__ import annotations

import os
import re
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import click
import msgspec
import redis.asyncio as aioredis
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from gex_alertd import keys, store
from gex_alertd.cli_redis import run_on_redis
from gex_alertd.commands import CONFIG_OPTION, load_or_exit
from gex_alertd.config import RedisConfig
from gex_alertd.connections import open_client
from gex_alertd.enqueue_once import EnqueueOnce
from gex_alertd.history import iter_jsonl
from gex_alertd.model import as_ms
from gex_alertd.replay_streams import PARALLEL_ABOVE, replay_parallel, replay_streams
from gex_alertd.replayer import Replayer, Stats, StreamKey, merge_stats
from gex_alertd.rules.base import RuleBase
from gex_alertd.rules.duration import parse_duration
from gex_alertd.rules.engine import Emitted

# --- option parsing ------------------------------------------------------------------------

DAY_MS = 86_400_000


def parse_time(text: str, now: datetime | None = None, *, end: bool = False) -> int:
    """ISO 8601 (naive means UTC), a date, or a duration ago (`2h`, `7d`) -> epoch ms. With
    `end` (an inclusive `--to`), a bare date is its last millisecond: `--from D --to D` is day D,
    where its midnight would have left the whole day out."""
    now = now or datetime.now(UTC)
    if end and re.fullmatch(r"\d{4}-\d{2}-\d{2}", text.strip()):
        return parse_time(text.strip()) + DAY_MS - 1
    try:
        ms = as_ms(now) - int(parse_duration(text) * 1000)
    except ValueError:
        try:
            ts = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise click.BadParameter(
                "expected an ISO time (2026-05-11T14:00:00Z), a date or a duration ago (2h), "
                f"got {text!r}"
            ) from None
        ms = as_ms(ts if ts.tzinfo else ts.replace(tzinfo=UTC))
    if ms < 0:  # no stream entry is older, and Redis refuses a negative ID: "Invalid stream ID"
        raise click.BadParameter(f"{text!r} is before 1970-01-01, where stored history begins")
    return ms


def parse_targets(values: tuple[str, ...]) -> list[StreamKey]:
    """`SPY,QQQ` or repeated options; `SPX:2026-05-15` names an expiry-filtered stream."""
    out: list[StreamKey] = []
    for value in values:
        for item in filter(None, (v.strip() for v in value.split(","))):
            sym, _, expiry = item.partition(":")
            if not re.fullmatch(r"[A-Za-z0-9.^_/-]{1,16}", sym) or (
                expiry and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", expiry)
            ):
                raise click.BadParameter(f"expected SYMBOL or SYMBOL:YYYY-MM-DD, got {item!r}")
            out.append((sym.upper(), expiry or None))
    return out


# --- output ---------------------------------------------------------------------------------


def summary_line(stats: Stats, elapsed: float) -> str:
    rate = stats.snapshots / elapsed if elapsed > 0 else 0.0
    return (
        f"{stats.snapshots} snapshots in {elapsed:.2f}s ({rate:,.0f}/s); "
        f"{stats.skipped} repeats skipped; {stats.bad} bad inputs"
    )


def summary_table(stats: Stats) -> Table:
    table = Table(title="Replay summary")
    table.add_column("rule")
    table.add_column("symbol")
    table.add_column("alerts", justify="right")
    table.add_column("suppressed", justify="right")
    keys = sorted(set(stats.alerts) | set(stats.suppressed))
    for rule, symbol in keys:
        table.add_row(
            rule, symbol, str(stats.alerts[(rule, symbol)]), str(stats.suppressed[(rule, symbol)])
        )
    table.add_section()
    table.add_row("total", "", str(sum(stats.alerts.values())), str(sum(stats.suppressed.values())))
    return table


@dataclass
class ReplayOptions:
    rules: list[RuleBase]
    redis_url: str | RedisConfig  # a node's URL, or the `redis:` config (cluster, sentinel)
    targets: list[StreamKey]
    start_ms: int | None = None
    end_ms: int | None = None
    input: Path | None = None
    out: Path | None = None
    send: bool = False
    progress: bool | None = None  # None: on a terminal
    jobs: int | None = None  # worker processes for stream replays; None: by size


async def run_replay(opts: ReplayOptions, console: Console, err: Console) -> Stats:
    replayer = Replayer(opts.rules)
    encoder = msgspec.json.Encoder()
    stats = replayer.stats
    out_fh = opts.out.open("wb") if opts.out else None
    redis: aioredis.Redis | None = None
    sent = 0
    pending: list[Emitted] = []
    show = err.is_terminal if opts.progress is None else opts.progress
    progress = Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        disable=not show,
        transient=True,
    )

    def bad(where: object, msg: str) -> None:
        stats.bad += 1
        err.print(f"[yellow]skipped[/] {where}: {msg}", markup=True, highlight=False)

    async def flush() -> None:
        nonlocal sent
        if out_fh is not None:
            out_fh.write(b"".join(encoder.encode(em.event) + b"\n" for em in pending))
        if opts.send and redis is not None and pending:
            # the live commit's dedup key: an alert the daemon already enqueued is not sent again
            enqueue = EnqueueOnce(redis)
            for em in pending:
                sent += await enqueue(em.event, em.channels)
        pending.clear()

    try:
        with progress:
            if opts.send or opts.input is None:
                redis = open_client(opts.redis_url, client_name="gex-alertd-replay")
            if opts.input is not None:
                size = opts.input.stat().st_size
                task = progress.add_task(f"replaying {opts.input.name}", total=size)
                wanted = {s for s, _ in opts.targets}
                with opts.input.open("rb") as fh:
                    for snap in iter_jsonl(fh, lambda n, m: bad(f"{opts.input}:{n}", m),
                                           lambda n: progress.advance(task, n)):  # fmt: skip
                        if wanted and snap.symbol.upper() not in wanted:
                            continue
                        ms = snap.as_of_ms
                        if (opts.start_ms is not None and ms < opts.start_ms) or (
                            opts.end_ms is not None and ms > opts.end_ms
                        ):
                            continue
                        pending += replayer.feed(snap, snap.expiry)
                        if len(pending) >= 1000:
                            await flush()
            else:
                assert redis is not None
                targets = opts.targets or await store.stream_symbols(redis)
                total = 0
                for sym, exp in targets:
                    total += await redis.xlen(keys.snap(sym, exp))
                task = progress.add_task("replaying streams", total=total or None)
                jobs = opts.jobs or (1 if total < PARALLEL_ABOVE else (os.cpu_count() or 1))
                jobs = max(1, min(jobs, len(targets)))
                advance = lambda n: progress.advance(task, n)  # noqa: E731
                if jobs == 1:
                    results = [
                        await replay_streams(
                            opts.redis_url, opts.rules, targets, opts.start_ms, opts.end_ms, advance
                        )
                    ]
                else:
                    results = await replay_parallel(
                        opts.redis_url, opts.rules, targets, opts.start_ms, opts.end_ms, jobs,
                        advance,
                    )  # fmt: skip
                for res in results:
                    for where, msg in res.bad:
                        err.print(
                            f"[yellow]skipped[/] {where}: {msg}", markup=True, highlight=False
                        )
                    merge_stats(stats, res.stats)
                    pending += res.emitted
            await flush()
    finally:
        if out_fh is not None:
            out_fh.close()
        if redis is not None:
            await redis.aclose()
    if opts.send:
        where = keys.outbox("<SYMBOL>")
        err.print(
            f"enqueued {sent} alert(s) onto their symbols' outboxes ({where})", highlight=False
        )
    return stats


@click.command()
@CONFIG_OPTION
@click.option("--from", "start", metavar="T", help="Start: ISO time, date, or a duration ago (7d).")
@click.option(
    "--to", "end", metavar="T", help="End (inclusive), same formats; a date: its whole day."
)
@click.option("--symbols", multiple=True, metavar="SYM[,SYM]", help="SPY,QQQ or SPX:2026-05-15.")
@click.option(
    "--input", "input_", type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="JSONL file of API responses (one per line) instead of the stored streams.",
)  # fmt: skip
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), help="Write alerts as JSONL."
)
@click.option(
    "--send",
    is_flag=True,
    help="Enqueue the alerts onto their symbols' outboxes (gex:{SYM}:alerts) for delivery.",
)
@click.option(
    "--progress/--no-progress", default=None, help="Progress bar (default: on a terminal)."
)
@click.option(
    "--jobs", "-j", type=click.IntRange(min=1), default=None,
    help="Worker processes, one stream each (default: one per CPU above 20,000 snapshots).",
)  # fmt: skip
def replay(
    config_path: Path,
    start: str | None,
    end: str | None,
    symbols: tuple[str, ...],
    input_: Path | None,
    out: Path | None,
    send: bool,
    progress: bool | None,
    jobs: int | None,
) -> None:
    """Backtest the configured rules over stored history or a JSONL file; sends nothing
    unless --send is given."""
    cfg = load_or_exit(config_path)
    targets = parse_targets(symbols)
    if not targets and input_ is None:
        targets = [(t.symbol, t.expiry) for t in cfg.watch.entries()]
    opts = ReplayOptions(
        rules=list(cfg.rules),
        redis_url=cfg.redis,
        targets=targets,
        start_ms=parse_time(start) if start else None,
        end_ms=parse_time(end, end=True) if end else None,
        input=input_,
        out=out,
        send=send,
        progress=progress,
        jobs=jobs,
    )
    if opts.start_ms is not None and opts.end_ms is not None and opts.start_ms > opts.end_ms:
        raise click.BadParameter("--from is after --to")
    # soft_wrap: a file:line or a path stays on one line, however long (copied, grepped)
    console, err = Console(), Console(stderr=True, soft_wrap=True)
    started = time.perf_counter()
    try:
        stats = run_on_redis(run_replay(opts, console, err), cfg.redis, targets)
    except OSError as exc:  # --input, --out
        raise click.ClickException(f"replay failed: {exc}") from None
    console.print(summary_table(stats))
    console.print(summary_line(stats, time.perf_counter() - started), soft_wrap=True)
    if out is not None:
        console.print(f"alerts written to {out}", highlight=False, soft_wrap=True)
    sys.stdout.flush()
