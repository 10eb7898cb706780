"""`gex-alertd replay`: a backtest of the configured rules over stored streams or a JSONL file.

The same engine as the live commit (`rules.engine`), with the rule state kept in memory: live
state keys and the outbox are never touched, unless `--send` enqueues the alerts (through the
same per-alert dedup keys as the live path, so an alert the daemon already sent is not sent
again). Ids equal the live ones for the same history, because everything in an event derives
from the rule, the snapshot and the state. Replaying a window starts with empty state at
`--from`, so the first snapshot of each stream never fires, exactly as for a new daemon.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import re
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import click
import msgspec
import redis.asyncio as aioredis
from redis.exceptions import RedisError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from gex_alertd import keys, store
from gex_alertd.commands import CONFIG_OPTION, load_or_exit
from gex_alertd.config import RedisConfig
from gex_alertd.connections import entries, open_client
from gex_alertd.enqueue_once import EnqueueOnce
from gex_alertd.model import FlowGex, PayloadError, as_ms, decode_flow_gex
from gex_alertd.rules.base import RuleBase
from gex_alertd.rules.columns import FIELDS, StrikeColumns, attach, from_block
from gex_alertd.rules.duration import parse_duration
from gex_alertd.rules.engine import Emitted, Engine, RuleSlot
from gex_alertd.rules.registry import columns_only
from gex_alertd.settled import SettledProfiles

StreamKey = tuple[str, str | None]  # (symbol, expiry filter)
_DECODE_SLICE = 64


@dataclass
class _Stream:
    slots: dict[str, RuleSlot] = field(default_factory=dict)
    prev: FlowGex | None = None
    prev_view: StrikeColumns | None = None  # prev's strike columns when its rows were skipped
    last_ms: int = -1


@dataclass
class Stats:
    snapshots: int = 0
    skipped: int = 0  # repeats or out-of-order as_of (the live path would refuse them too)
    bad: int = 0  # undecodable lines or entries
    alerts: Counter[tuple[str, str]] = field(default_factory=Counter)
    suppressed: Counter[tuple[str, str]] = field(default_factory=Counter)


class Replayer:
    """Feeds snapshots through the engine, one in-memory state per (symbol, expiry)."""

    def __init__(self, rules: list[RuleBase]):
        self.engine = Engine(rules)
        # every rule reads strike data through `rules.columns` only: the reader may skip rows
        self.columns_only = columns_only(rules)
        self.streams: dict[StreamKey, _Stream] = {}
        self.stats = Stats()

    def feed(
        self, snap: FlowGex, expiry: str | None, view: StrikeColumns | None = None
    ) -> list[Emitted]:
        """`view`: the strike columns of a snapshot decoded without rows (`strikes == []`);
        only for a Replayer with `columns_only` rules."""
        key = (snap.symbol, expiry)
        st = self.streams.get(key)
        if st is None:
            st = self.streams[key] = _Stream()
        ms = snap.as_of_ms
        if ms <= st.last_ms:
            self.stats.skipped += 1
            return []
        # attached right before the (synchronous) evaluation: nothing can evict them between
        if st.prev is not None and st.prev_view is not None:
            attach(st.prev, st.prev_view)
        if view is not None:
            attach(snap, view)
        outcome = self.engine.evaluate(st.slots, snap, st.prev, expiry)
        st.slots, st.prev, st.prev_view, st.last_ms = outcome.slots, snap, view, ms
        self.stats.snapshots += 1
        for em in outcome.emitted:
            self.stats.alerts[(em.event.rule, snap.symbol)] += 1
        for sup in outcome.suppressed:
            self.stats.suppressed[(sup.event.rule, snap.symbol)] += 1
        return outcome.emitted


# --- inputs ------------------------------------------------------------------------------


def iter_jsonl(fh: IO[bytes], on_error: Any, on_bytes: Any = None) -> Iterator[FlowGex]:
    """One API response per line; a bad line is reported (with its number) and skipped."""
    for lineno, line in enumerate(fh, 1):
        if on_bytes is not None:
            on_bytes(len(line))
        if not line.strip():
            continue
        try:
            yield decode_flow_gex(line)
        except PayloadError as exc:
            on_error(lineno, str(exc))


async def iter_streams(
    redis: aioredis.Redis,
    targets: list[StreamKey],
    start_ms: int | None,
    end_ms: int | None,
    on_error: Callable[[str, str], None],
    page: int = 2000,
) -> AsyncIterator[tuple[FlowGex, str | None]]:
    """Stored snapshots in as_of order per stream; an undecodable entry is reported (with its
    key and entry ID) and skipped, the rest of the stream still replays."""
    async for snap, expiry, _ in iter_stream_views(
        redis, targets, start_ms, end_ms, on_error, page
    ):
        yield snap, expiry


async def iter_stream_views(
    redis: aioredis.Redis,
    targets: list[StreamKey],
    start_ms: int | None,
    end_ms: int | None,
    on_error: Callable[[str, str], None],
    page: int = 2000,
    columns_only: bool = False,
) -> AsyncIterator[tuple[FlowGex, str | None, StrikeColumns | None]]:
    """As `iter_streams`; with `columns_only` each snapshot comes without rows and with the
    strike columns the rules read (`rules.columns.FIELDS`), decoded straight from the block:
    decoding 200 rows was most of a replay's time."""
    for symbol, expiry in targets:
        key = keys.snap(symbol, expiry)
        lo = "-" if start_ms is None else f"{start_ms}-0"
        hi = "+" if end_ms is None else f"{end_ms}-18446744073709551615"
        while True:
            batch = entries(await redis.xrange(key, min=lo, max=hi, count=page))
            if columns_only:
                # blocks decoded together, a slice of the page at a time (small enough for the
                # CPU caches, big enough that numpy's per-call cost is shared)
                for at in range(0, len(batch), _DECODE_SLICE):
                    part = batch[at : at + _DECODE_SLICE]
                    decoded = store.decode_fields_columns_many([f for _, f in part], FIELDS)
                    for (entry_id, _), item in zip(part, decoded, strict=True):
                        if isinstance(item, store.StoredEntryError):
                            on_error(f"{key} {entry_id.decode()}", str(item))
                            continue
                        yield item[0], expiry, from_block(item[1])
            else:
                for entry_id, fields in batch:
                    try:
                        snap = store.decode_fields(fields)
                    except store.StoredEntryError as exc:
                        on_error(f"{key} {entry_id.decode()}", str(exc))
                        continue
                    yield snap, expiry, None
            if len(batch) < page:
                break
            lo = "(" + batch[-1][0].decode()


# --- option parsing ------------------------------------------------------------------------


def parse_time(text: str, now: datetime | None = None) -> int:
    """ISO 8601 (naive means UTC), a date, or a duration ago (`2h`, `7d`) -> epoch ms."""
    now = now or datetime.now(UTC)
    try:
        return as_ms(now) - int(parse_duration(text) * 1000)
    except ValueError:
        pass
    try:
        ts = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(
            "expected an ISO time (2026-05-11T14:00:00Z), a date or a duration ago (2h), "
            f"got {text!r}"
        ) from None
    return as_ms(ts if ts.tzinfo else ts.replace(tzinfo=UTC))


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


# below this many stored snapshots the start-up of worker processes costs more than it saves
PARALLEL_ABOVE = 20_000


@dataclass
class StreamResult:
    emitted: list[Emitted]
    stats: Stats
    bad: list[tuple[str, str]]


async def replay_streams(
    redis_url: str | RedisConfig,
    rules: list[RuleBase],
    targets: list[StreamKey],
    start_ms: int | None,
    end_ms: int | None,
    on_progress: Callable[[int], None] | None = None,
    columns_only: bool | None = None,
) -> StreamResult:
    """Replay whole streams (in order, state carried across pages) and collect the alerts.
    `columns_only`: decode strike columns, not rows (None: whenever the rules allow it; False
    forces full rows, the reference the fast path is tested against)."""
    replayer = Replayer(rules)
    if columns_only is None:
        columns_only = replayer.columns_only
    result = StreamResult([], replayer.stats, [])

    def bad(where: str, msg: str) -> None:
        replayer.stats.bad += 1
        result.bad.append((where, msg))

    redis = open_client(redis_url, client_name="gex-alertd-replay")
    settled = SettledProfiles(redis, None)  # what the live path stored: never fetched here
    try:
        n = 0
        async for snap, expiry, view in iter_stream_views(
            redis, targets, start_ms, end_ms, bad, columns_only=columns_only
        ):
            if replayer.engine.needs_settled(snap.symbol):
                await settled.attach(snap, expiry)
            result.emitted += replayer.feed(snap, expiry, view)
            n += 1
            if n % 1000 == 0 and on_progress is not None:
                on_progress(1000)
        if on_progress is not None:
            on_progress(n % 1000)
    finally:
        await redis.aclose()
    return result


_worker_queue: Any = None


def _worker_init(queue: Any) -> None:
    global _worker_queue
    _worker_queue = queue


def _worker(
    redis_url: str | RedisConfig,
    rules: list[RuleBase],
    target: StreamKey,
    start_ms: int | None,
    end_ms: int | None,
) -> StreamResult:
    """One stream in a worker process (the rules are CPU-bound; streams are independent)."""
    return asyncio.run(
        replay_streams(redis_url, rules, [target], start_ms, end_ms, _worker_queue.put)
    )


def _merge(into: Stats, other: Stats) -> None:
    into.snapshots += other.snapshots
    into.skipped += other.skipped
    into.bad += other.bad
    into.alerts.update(other.alerts)
    into.suppressed.update(other.suppressed)


async def _replay_parallel(
    opts: ReplayOptions, targets: list[StreamKey], jobs: int, advance: Callable[[int], None]
) -> list[StreamResult]:
    ctx = multiprocessing.get_context("spawn")  # no fork of a running event loop
    queue = ctx.Queue()
    with ProcessPoolExecutor(
        jobs, mp_context=ctx, initializer=_worker_init, initargs=(queue,)
    ) as pool:
        futures = [
            asyncio.wrap_future(
                pool.submit(_worker, opts.redis_url, opts.rules, t, opts.start_ms, opts.end_ms)
            )
            for t in targets
        ]
        while not all(f.done() for f in futures):
            await asyncio.sleep(0.1)
            while not queue.empty():
                advance(queue.get())
        return [await f for f in futures]  # in target order: the output is deterministic


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
                    results = await _replay_parallel(opts, targets, jobs, advance)
                for res in results:
                    for where, msg in res.bad:
                        err.print(
                            f"[yellow]skipped[/] {where}: {msg}", markup=True, highlight=False
                        )
                    _merge(stats, res.stats)
                    pending += res.emitted
            await flush()
    finally:
        if out_fh is not None:
            out_fh.close()
        if redis is not None:
            await redis.aclose()
    if opts.send:
        err.print(f"enqueued {sent} alert(s) onto {keys.ALERTS}", highlight=False)
    return stats


@click.command()
@CONFIG_OPTION
@click.option("--from", "start", metavar="T", help="Start: ISO time, date, or a duration ago (7d).")
@click.option("--to", "end", metavar="T", help="End (inclusive), same formats.")
@click.option("--symbols", multiple=True, metavar="SYM[,SYM]", help="SPY,QQQ or SPX:2026-05-15.")
@click.option(
    "--input", "input_", type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="JSONL file of API responses (one per line) instead of the stored streams.",
)  # fmt: skip
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), help="Write alerts as JSONL."
)
@click.option("--send", is_flag=True, help="Enqueue the alerts onto gex:alerts for delivery.")
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
        end_ms=parse_time(end) if end else None,
        input=input_,
        out=out,
        send=send,
        progress=progress,
        jobs=jobs,
    )
    if opts.start_ms is not None and opts.end_ms is not None and opts.start_ms > opts.end_ms:
        raise click.BadParameter("--from is after --to")
    console, err = Console(), Console(stderr=True)
    started = time.perf_counter()
    try:
        stats = asyncio.run(run_replay(opts, console, err))
    except (OSError, RedisError) as exc:
        raise click.ClickException(f"replay failed: {exc}") from None
    console.print(summary_table(stats))
    console.print(summary_line(stats, time.perf_counter() - started), soft_wrap=True)
    if out is not None:
        console.print(f"alerts written to {out}", highlight=False)
    sys.stdout.flush()
