"""`run`, `check` and `tail`: the commands that drive the daemon itself."""

from __future__ import annotations

import asyncio
import sys
from datetime import date
from pathlib import Path
from typing import Any, NoReturn

import click

from gex_alertd import capacity, cli_signals, keys, redaction
from gex_alertd import config as config_mod
from gex_alertd.config import Config, ConfigError
from gex_alertd.connections import AUTH_REFUSED, RedisAuthRefused, describe_redis_error

# No checks on the path here: whatever is wrong with the file (missing, a directory, unreadable)
# is a bad config, exit 2 from `load_or_exit` (the unit's RestartPreventExitStatus=2), never a
# usage error (64, which systemd would restart for ever)
CONFIG_OPTION = click.option(
    "--config",
    "-c",
    "config_path",
    type=click.Path(path_type=Path),
    default=Path("/etc/gex-alertd/config.yaml"),
    show_default=True,
    envvar="GEX_ALERTD_CONFIG",
    help="YAML config file.",
)


def config_failed(exc: ConfigError) -> NoReturn:
    click.echo(f"error: invalid config {exc.source}:", err=True)
    for problem in exc.problems:
        click.echo(f"  {problem}", err=True)
    sys.exit(2)


def load_or_exit(path: Path) -> Config:
    try:
        return config_mod.load(path)
    except ConfigError as exc:
        config_failed(exc)


def _run_loop(coro: Any, use_uvloop: bool) -> Any:
    try:
        if use_uvloop:
            try:
                import uvloop
            except ImportError:
                raise click.ClickException(
                    "uvloop is not installed (pip install gex-alertd[fast])"
                ) from None
            return uvloop.run(coro)
        return asyncio.run(coro)
    finally:
        # closing the loop gave SIGHUP back its default action, the process's end: a reload
        # sent while `run` exits must not turn its exit status (1: restart) into that death
        # by signal, which systemd counts as clean (ops/early_sighup.py)
        from gex_alertd.ops import early_sighup

        early_sighup.install()


@click.command()
@CONFIG_OPTION
@click.option(
    "--uvloop/--no-uvloop",
    default=False,
    help="Run on uvloop (the `fast` extra). Default: the asyncio loop, which measured as fast "
    "or faster with the poll path's own HTTP client (bench/README.md).",
)
def run(config_path: Path, uvloop: bool) -> None:
    """Run the daemon in the foreground until SIGTERM or Ctrl-C."""
    cfg = load_or_exit(config_path)
    from gex_alertd.ops.logging import configure

    configure(cfg.ops.log_format, cfg.ops.log_level)
    from gex_alertd.app import run_daemon
    from gex_alertd.ops.calendar_load import CalendarUnavailable
    from gex_alertd.sources.errors import AuthError
    from gex_alertd.sources.simulator.scenario import ScenarioError

    try:
        _run_loop(run_daemon(cfg), uvloop)
    except RedisAuthRefused as exc:  # a configuration problem: systemd must not restart it
        _exit(str(exc), 2)
    except AuthError as exc:  # the key refused before it was ever taken (startup_key.py)
        _exit(
            f"{config_path}: source.api_key: {cfg.source.base_url} refused it at start-up: {exc}",
            2,
        )
    except ScenarioError as exc:  # the embedded simulator's scenario file: a bad config too
        _exit(f"{config_path}: source.simulator.scenario: {exc}", 2)
    except CalendarUnavailable as exc:  # market_hours: nyse with no NYSE table to answer from
        _exit(f"{config_path}: watch.market_hours: nyse: {exc}", 2)
    except ConnectionError as exc:
        _exit(str(exc), 1)


def _exit(message: str, code: int) -> NoReturn:
    """`run` ends on a start-up error: one line, redacted; 2 for a bad config (systemd's
    RestartPreventExitStatus), 1 for what a restart may mend."""
    click.echo(f"error: {redaction.redact(message)}", err=True)
    sys.exit(code)


@click.command()
@CONFIG_OPTION
@click.option("--probe", is_flag=True, help="Also open a connection to every channel's endpoint.")
@click.option("--offline", is_flag=True, help="Only validate the file: no Redis, no upstream.")
@click.option(
    "--strict", is_flag=True, help="Warnings (unwatched symbols, unreachable rules) are errors."
)
def check(config_path: Path, probe: bool, offline: bool, strict: bool) -> None:
    """Validate the config, then check Redis, the upstream key and (with --probe) the channels."""
    from gex_alertd.config_warnings import warnings

    cfg = load_or_exit(config_path)
    found = warnings(cfg)
    if strict and found:
        config_failed(ConfigError([f"{w} (--strict)" for w in found], str(config_path)))
    click.echo(f"config {config_path}: ok ({len(cfg.watch.symbols)} watch entries, "
               f"{len(cfg.rules)} rules, {len(cfg.channels)} channels"
               f"{f', {len(found)} warning(s)' if found else ''})")  # fmt: skip
    for w in found:
        click.echo(f"warning: {w}", err=True)
    _report_capacity(cfg)
    if offline:
        return
    try:
        failures = asyncio.run(_check_live(cfg, probe))
    except RedisAuthRefused as exc:  # exit 2 like any bad config (README "Configuration")
        click.echo(f"FAIL {exc}", err=True)
        sys.exit(2)
    if failures:
        for f in failures:
            click.echo(f"FAIL {redaction.redact(f)}", err=True)
        sys.exit(1)


def _report_capacity(cfg: Config) -> None:
    """The poll plan against the request budget. An overload is a warning, not a failure (the
    config is valid and the daemon runs, only slower than asked), so the exit status stays 0."""
    plan = capacity.for_config(cfg)
    if plan.overloaded:
        click.echo(f"warning: {capacity.describe(plan)}", err=True)
    else:
        click.echo(f"poll plan: {capacity.describe(plan)}")
    note = capacity.cache_note(plan)
    if note:
        click.echo(f"note: {note}", err=True)


async def _check_live(cfg: Config, probe: bool) -> list[str]:
    from gex_alertd.connections import connect_config, describe

    failures: list[str] = []
    where = describe(cfg.redis)
    try:
        redis = connect_config(cfg.redis, client_name="gex-alertd-check")
        info = await asyncio.wait_for(redis.info("server"), timeout=5)
        click.echo(f"redis {where}: ok (redis {info.get('redis_version')})")
    except Exception as exc:
        line = f"redis {where}: {redaction.redact(describe_redis_error(exc))}"
        if isinstance(exc, AUTH_REFUSED):  # redis.url's credentials: a bad config, as in `run`
            raise RedisAuthRefused(line) from None
        failures.append(line)
        return failures
    finally:
        await redis.aclose()
    failures += await _check_source(cfg)
    if probe:
        failures += await _probe_channels(cfg)
    return failures


async def _check_source(cfg: Config) -> list[str]:
    from gex_alertd.sources.errors import AuthError, SourceError, UnknownSymbol
    from gex_alertd.sources.flowgex import FlowGexClient

    if cfg.source.kind == "simulator":
        click.echo("source: embedded simulator (no API key needed)")
        return []
    entries = cfg.watch.entries()
    symbol = entries[0].symbol if entries else "SPY"
    client = FlowGexClient.from_config(cfg.source)
    try:
        fetched = await client.fetch(symbol, entries[0].expiry if entries else None)
        snap = fetched.snapshot
        click.echo(
            f"source {cfg.source.base_url}: ok, key accepted "
            f"({symbol} as_of {snap.as_of.isoformat()}, {len(snap.strikes)} strikes)"
        )
        return []
    except AuthError as exc:
        return [f"source {cfg.source.base_url}: key refused: {exc}"]
    except UnknownSymbol as exc:
        click.echo(f"source {cfg.source.base_url}: key accepted ({exc})")
        return []
    except SourceError as exc:
        return [f"source {cfg.source.base_url}: {exc}"]
    finally:
        await client.close()


async def _probe_channels(cfg: Config) -> list[str]:
    from gex_alertd.notify.registry import build_notifier

    failures = []
    for name, ch in cfg.channels.items():
        notifier = build_notifier(name, ch)
        try:
            target = notifier.probe_target()
        finally:
            await notifier.aclose()
        if target is None:
            click.echo(f"channel {name}: ok ({type(ch).__name__})")
            continue
        host, port = target
        try:
            _r, w = await asyncio.wait_for(asyncio.open_connection(host, port), timeout=5)
            w.close()
            await w.wait_closed()
            click.echo(f"channel {name}: ok (connected to {host}:{port})")
        except (OSError, TimeoutError) as exc:
            failures.append(f"channel {name}: cannot connect to {host}:{port}: {exc}")
    return failures


def _symbol(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """A ticker as `watch.symbols` takes it: anything else names no stream, and `tail` would
    follow that key for ever, saying nothing."""
    if value is not None and not config_mod.is_symbol(value):
        raise click.BadParameter(
            f"not a ticker symbol: {value!r} (letters and digits, with . - ^ inside; at most 16)"
        )
    return value


def _expiry(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        raise click.BadParameter(f"expected a date, YYYY-MM-DD, got {value!r}") from None


MAX_LAST = 100_000  # `--last`: Redis refuses a negative count ("must be positive")


@click.command()
@CONFIG_OPTION
@click.argument("symbol", required=False, callback=_symbol)
@click.option(
    "--expiry", default=None, callback=_expiry, help="The expiry filter of the watch entry."
)
@click.option(
    "--alerts",
    is_flag=True,
    help="Tail the alert outboxes instead of snapshots: SYMBOL's, or every one.",
)
@click.option(
    "--last", type=click.IntRange(0, MAX_LAST), default=0, show_default=True,
    help="Also print the last N entries first.",
)  # fmt: skip
def tail(
    config_path: Path, symbol: str | None, expiry: str | None, alerts: bool, last: int
) -> None:
    """Print live snapshots of SYMBOL (or alerts) from Redis as they are committed."""
    cfg = load_or_exit(config_path)
    if not alerts and not symbol:
        raise click.UsageError("give a SYMBOL, or --alerts")
    from gex_alertd.cli_redis import run_on_redis

    targets = [(t.symbol, t.expiry) for t in cfg.watch.entries()]
    try:
        run_on_redis(_tail(cfg, symbol, expiry, alerts, last), cfg.redis, targets)
    except KeyboardInterrupt:
        pass


TAIL_RESCAN_S = 30.0  # `tail --alerts`: how often it looks for outboxes created since
# under the client's 5 s socket timeout (as web/live.py's reader): a BLOCK as long as the
# timeout raced it, and after a Redis restart the timeout won: "Timeout reading", tail ended
TAIL_BLOCK_MS = 2000


async def _tail(
    cfg: Config, symbol: str | None, expiry: str | None, alerts: bool, last: int
) -> None:
    from gex_alertd.connections import connect_config, entries, read_entries

    redis = connect_config(cfg.redis, client_name="gex-alertd-tail")
    try:
        if alerts:
            await _tail_alerts(redis, cfg, symbol, last)
            return
        key = keys.snap(symbol or "", expiry)
        cursor = "$"
        if last:
            backlog = list(reversed(entries(await redis.xrevrange(key, count=last))))
            for _id, fields in backlog:
                _print_entry(fields, alerts)
            if backlog:
                cursor = backlog[-1][0].decode()
        while not cli_signals.stopping:  # a lost cancellation: cli_signals.stopping
            batch = read_entries(await redis.xread({key: cursor}, block=TAIL_BLOCK_MS, count=100))
            for _key, new in batch:
                for entry_id, fields in new:
                    cursor = entry_id.decode()
                    _print_entry(fields, alerts)
    finally:
        await redis.aclose()


async def _outboxes(redis: Any, cfg: Config) -> set[str]:
    """Every outbox to follow: the watched symbols', the operator one, and any other in
    Redis (a symbol no longer watched, another daemon's watch list)."""
    from gex_alertd.connections import as_str

    names = {keys.outbox(t.symbol) for t in cfg.watch.entries()}
    names.add(keys.outbox(keys.OPS_SYMBOL))
    async for raw in redis.scan_iter(match=keys.OUTBOX_PATTERN, count=1000, _type="stream"):
        names.add(as_str(raw))
    return names


async def _tail_alerts(redis: Any, cfg: Config, symbol: str | None, last: int) -> None:
    """Follow the outboxes (one per symbol, each in its own slot): merged by entry time."""
    from gex_alertd.connections import (
        entries,
        entry_key,
        is_cluster,
        read_slot_groups,
        stream_tops,
    )

    loop = asyncio.get_running_loop()
    names = {keys.outbox(symbol)} if symbol else await _outboxes(redis, cfg)
    cursors = await stream_tops(redis, sorted(names))
    if last:
        async with redis.pipeline(transaction=False) as pipe:
            for name in sorted(names):
                pipe.xrevrange(name, count=last)
            backlog = [e for reply in await pipe.execute() for e in entries(reply)]
        for _id, fields in sorted(backlog, key=lambda e: entry_key(e[0]))[-last:]:
            _print_entry(fields, True)
    rescan = loop.time() + TAIL_RESCAN_S
    while not cli_signals.stopping:  # a lost cancellation: cli_signals.stopping
        if not symbol and loop.time() >= rescan:
            # created after the start: every entry in it is new to us
            cursors.update({n: "0-0" for n in await _outboxes(redis, cfg) if n not in cursors})
            rescan = loop.time() + TAIL_RESCAN_S
        batch = await read_slot_groups(
            redis, [{n: c} for n, c in cursors.items()], count=100, block_ms=TAIL_BLOCK_MS
        )
        got = [(key.decode(), e) for key, new in batch for e in new]
        for key, (entry_id, fields) in sorted(got, key=lambda g: entry_key(g[1][0])):
            cursors[key] = entry_id.decode()
            _print_entry(fields, True)
        if not got and is_cluster(redis):  # no BLOCK waited for us
            await asyncio.sleep(1.0)


def _print_entry(fields: dict[bytes, bytes], alerts: bool) -> None:
    # imported here, as in _tail: the store pulls in numpy, which other commands do not need
    from gex_alertd import store
    from gex_alertd.model import decode_alert
    from gex_alertd.quoted import printable  # the entries hold the upstream's text

    if alerts:
        try:
            event = decode_alert(fields[b"event"])
        except (KeyError, ValueError) as exc:  # a hostile or damaged entry: say so, go on
            click.echo(f"(an outbox entry that is no alert event: {exc})", err=True)
            return
        click.echo(
            printable(
                f"{event.as_of}  {event.severity:<8} {event.symbol:<6} {event.rule}: "
                f"{event.summary}"
            )
        )
        return
    snap = store.decode_fields(fields)
    flip = (
        f"{snap.live_gamma_flip:.2f}" if snap.flip is not None else f"- ({snap.gamma_flip_status})"
    )
    click.echo(
        printable(
            f"{snap.as_of.isoformat()}  {snap.symbol:<6} spot {snap.underlying_price:>10.2f}  "
            f"net {snap.live_net_gex:>+16,.0f} ({snap.live_net_gex_label})  flip {flip}  "
            f"{len(snap.strikes)} strikes"
        )
    )
