"""`gex-alertd notify-test` and `gex-alertd outbox` (list pending/dead, retry dead letters)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import click
import redis.asyncio as aioredis

from gex_alertd import config as config_mod
from gex_alertd import redaction
from gex_alertd.cli_redis import run_on_redis
from gex_alertd.commands import CONFIG_OPTION
from gex_alertd.connections import open_client
from gex_alertd.notify import outbox as ob
from gex_alertd.notify.base import DeliveryOutcome, Ok, Permanent
from gex_alertd.notify.registry import build_notifier
from gex_alertd.notify.sample import sample_alert
from gex_alertd.notify.silences import list_silenced
from gex_alertd.quoted import printable  # a reason quotes a receiver's answer

MAX_ROWS = 100_000  # `--limit`: Redis refuses a count of 0 or less ("must be positive")

redis_option = click.option("--redis", "redis_url", default=None, help="Override redis.url.")


def _load(config_path: Path) -> config_mod.Config:
    from gex_alertd.commands import load_or_exit  # same option and exit status 2 as `check`

    return load_or_exit(config_path)


def _fail(msg: str) -> None:
    raise click.ClickException(printable(redaction.redact(msg)))


@click.command("notify-test")
@click.option("--channel", "channel", required=True, help="Channel name from the config.")
@CONFIG_OPTION
def notify_test(channel: str, config_path: Path) -> None:
    """Send a sample alert to one channel now (bypassing the outbox) and report the outcome."""
    cfg = _load(config_path)
    ch = cfg.channels.get(channel)
    if ch is None:
        known = ", ".join(sorted(cfg.channels)) or "none defined"
        _fail(f"unknown channel {channel!r} (channels: {known})")
        return

    async def go() -> DeliveryOutcome:
        notifier = build_notifier(channel, ch)
        try:
            return await notifier.send([sample_alert(channel)])
        finally:
            await notifier.aclose()

    outcome = asyncio.run(go())
    if isinstance(outcome, Ok):
        click.echo(f"{channel}: delivered ({outcome.detail or 'ok'})")
        return
    kind = "permanent failure" if isinstance(outcome, Permanent) else "temporary failure"
    after = getattr(outcome, "after", None)
    hint = f", receiver asked to retry after {after:g}s" if after is not None else ""
    _fail(f"{channel}: {kind}: {outcome.reason}{hint}")


def _client(cfg: config_mod.Config, redis_url: str | None) -> aioredis.Redis:
    return open_client(redis_url or cfg.redis, client_name="gex-alertd-outbox")


def _run_on_redis(
    go: Callable[[], Coroutine[Any, Any, None]], cfg: config_mod.Config, redis_url: str | None
) -> None:
    """Run a command's coroutine; Redis failing it is one clear line (cli_redis.py)."""
    targets = [(t.symbol, t.expiry) for t in cfg.watch.entries()]
    run_on_redis(go(), redis_url or cfg.redis, targets)


@click.group(invoke_without_command=True)
@CONFIG_OPTION
@redis_option
@click.pass_context
def outbox(ctx: click.Context, config_path: Path, redis_url: str | None) -> None:
    """Show the alert outbox: pending entries per channel and dead letters.

    Without a subcommand this runs `list`."""
    ctx.obj = (config_path, redis_url)
    if ctx.invoked_subcommand is None:
        ctx.invoke(list_cmd)


@outbox.command("list")
@click.option(
    "--limit", type=click.IntRange(1, MAX_ROWS), default=50, show_default=True,
    help="Rows per section.",
)  # fmt: skip
@click.pass_context
def list_cmd(ctx: click.Context, limit: int = 50) -> None:
    """List pending entries per channel, the dead letters and the latest silenced deliveries."""
    config_path, redis_url = ctx.obj
    cfg = _load(config_path)

    async def go() -> None:
        client = _client(cfg, redis_url)
        try:
            click.echo("PENDING")
            streams = await ob.all_streams(client, [t.symbol for t in cfg.watch.entries()])
            for name in cfg.channels:
                count, lag = await ob.group_stats(client, name, streams)
                click.echo(f"  {name}: {count} unacknowledged, oldest {lag:.1f}s")
                for row in await ob.pending_entries(client, name, streams, limit):
                    click.echo(
                        f"    {row['stream']} {row['entry']}  {row['alert_id']}"
                        f"  consumer={row['consumer']}"
                        f"  idle={row['idle_s']:.1f}s  deliveries={row['deliveries']}"
                    )
            dead = await ob.list_dead(client, limit)
            click.echo(f"DEAD ({len(dead)})")
            for d in dead:
                click.echo(
                    f"  {d.dead_id}  {d.channel:<10} {d.alert_id}  attempts={d.attempts}"
                    f"  at {d.failed_at}\n      reason: {printable(redaction.redact(d.reason))}"
                )
            silenced = await list_silenced(client, limit)
            click.echo(f"SILENCED ({len(silenced)} most recent)")
            for r in silenced:
                click.echo(
                    f"  {r.record_id}  {r.channel:<10} {r.alert_id}  silence={r.silence}"
                    f"  at {r.at}\n      {printable(redaction.redact(r.summary))}"
                )
        finally:
            await client.aclose()

    _run_on_redis(go, cfg, redis_url)


@outbox.command("retry")
@click.argument("dead_ids", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Retry every dead letter.")
@click.option("--channel", default=None, help="Only dead letters of this channel.")
@click.pass_context
def retry_cmd(
    ctx: click.Context, dead_ids: tuple[str, ...], all_: bool, channel: str | None
) -> None:
    """Put dead letters (by their gex:dead id, or --all) back into the outbox for their channel."""
    config_path, redis_url = ctx.obj
    cfg = _load(config_path)
    if not dead_ids and not all_:
        _fail("name dead-letter ids (see `gex-alertd outbox list`) or pass --all")

    async def go() -> None:
        client = _client(cfg, redis_url)
        try:
            dead = await ob.list_dead(client, 100_000)
            chosen = [
                d
                for d in dead
                if (all_ or d.dead_id in dead_ids) and (channel is None or d.channel == channel)
            ]
            missing = set(dead_ids) - {d.dead_id for d in dead}
            if missing:
                _fail(f"no such dead letter(s): {', '.join(sorted(missing))}")
            unknown = sorted({d.channel for d in chosen} - set(cfg.channels))
            if unknown:
                _fail(f"channel(s) no longer configured: {', '.join(unknown)}; not retried")
            new_ids = await ob.retry_dead(client, chosen)
            for d, new in zip(chosen, new_ids, strict=True):
                click.echo(f"requeued {d.alert_id} for {d.channel} as {new}")
            click.echo(f"{len(chosen)} dead letter(s) requeued")
        finally:
            await client.aclose()

    _run_on_redis(go, cfg, redis_url)
