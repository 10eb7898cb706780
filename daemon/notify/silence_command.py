"""`gex-alertd silence add|list|expire`: silences on the shared Redis (notify/silences.py)."""

from __future__ import annotations

import getpass
import json
from collections.abc import Callable, Coroutine
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from gex_alertd.cli_redis import run_on_redis
from gex_alertd.commands import CONFIG_OPTION
from gex_alertd.connections import open_client
from gex_alertd.notify import silences as sil
from gex_alertd.quoted import printable
from gex_alertd.rules.duration import parse_duration


def _store_run(
    ctx: click.Context, go: Callable[[sil.SilenceStore], Coroutine[Any, Any, None]]
) -> None:
    """Run `go` against the config's Redis; Redis trouble (cli_redis.py) and refused silences
    are one clear line, not a traceback."""

    from gex_alertd.commands import load_or_exit

    config_path, redis_url = ctx.obj
    where = redis_url or load_or_exit(config_path).redis

    async def run() -> None:
        client = open_client(where, client_name="gex-alertd-silence")
        try:
            await go(sil.SilenceStore(client))
        finally:
            await client.aclose()

    try:
        run_on_redis(run(), where)
    except sil.SilenceError as exc:
        raise click.ClickException(str(exc)) from None


def _duration(_ctx: click.Context, _param: click.Parameter, value: str) -> float:
    try:
        return float(parse_duration(value))
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _instant(_ctx: click.Context, _param: click.Parameter, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"expected an ISO 8601 time, got {value!r}") from None
    if ts.tzinfo is None:
        raise click.BadParameter("give a time zone (e.g. 2026-05-15T13:30:00Z)")
    return ts


@click.group()
@CONFIG_OPTION
@click.option("--redis", "redis_url", default=None, help="Override redis.url.")
@click.pass_context
def silence(ctx: click.Context, config_path: Path, redis_url: str | None) -> None:
    """Silence alerts matching a rule, symbol, severity, channel or type for a while.

    Silences live in Redis (every daemon sharing it honours them), are matched at delivery
    (a silenced alert is recorded as silenced, not sent) and end by themselves."""
    ctx.obj = (config_path, redis_url)


@silence.command("add")
@click.option("--rule", default=None, help="Rule name.")
@click.option("--symbol", default=None, help="Ticker symbol.")
@click.option("--severity", type=click.Choice(["info", "warning", "critical"]), default=None)
@click.option("--channel", default=None, help="Channel name: silence only this delivery.")
@click.option("--type", "type_", default=None, help="Rule type (flip_cross, ...).")
@click.option(
    "--for", "duration", required=True, callback=_duration, help="How long, e.g. 30m, 1h, 2d."
)
@click.option("--starts-at", default=None, callback=_instant, help="ISO time (default: now).")
@click.option("--comment", default="", help="Why (shown in `silence list`).")
@click.option("--created-by", default=None, help="Who (default: the login name).")
@click.pass_context
def add(
    ctx: click.Context,
    rule: str | None,
    symbol: str | None,
    severity: Any,
    channel: str | None,
    type_: str | None,
    duration: float,
    starts_at: datetime | None,
    comment: str,
    created_by: str | None,
) -> None:
    """Add a silence and print its id."""
    matchers = sil.Matchers(
        rule=rule, symbol=symbol, severity=severity, channel=channel, type=type_
    )
    who = created_by if created_by is not None else getpass.getuser()

    async def go(store: sil.SilenceStore) -> None:
        s = await store.add(
            matchers, duration, comment=comment, created_by=who, starts_at=starts_at
        )
        click.echo(s.id)

    _store_run(ctx, go)


@silence.command("list")
@click.option("--all", "all_", is_flag=True, help="Also expired silences (kept for 5 days).")
@click.option("--json", "as_json", is_flag=True, help="JSON, one array.")
@click.pass_context
def list_cmd(ctx: click.Context, all_: bool, as_json: bool) -> None:
    """List active and pending silences (with --all, expired ones too)."""

    async def go(store: sil.SilenceStore) -> None:
        silences = await store.all()
        now = store.now()
        shown = [s for s in silences if all_ or s.status(now) != "expired"]
        if as_json:
            click.echo(json.dumps(sil.to_json(shown, now), default=str, indent=2))
            return
        if not shown:
            click.echo("no silences" if all_ else "no active or pending silences")
            return
        for s in shown:
            left = (s.ends_at - now).total_seconds()
            until = f"ends {s.ends_at.isoformat()}" + (f" (in {left:.0f}s)" if left > 0 else "")
            # the comment, author and matchers come from any client of the silences API
            click.echo(printable(f"{s.id}  {s.status(now):<8} {s.matchers.describe()}"))
            click.echo(printable(f"    {until}  by {s.created_by or '-'}: {s.comment}"))

    _store_run(ctx, go)


@silence.command("expire")
@click.argument("silence_ids", nargs=-1, required=True)
@click.pass_context
def expire(ctx: click.Context, silence_ids: tuple[str, ...]) -> None:
    """End silences now (alerts matching them are delivered again)."""

    async def go(store: sil.SilenceStore) -> None:
        for sid in silence_ids:
            s = await store.expire(sid)
            click.echo(f"{s.id} expired at {s.ends_at.isoformat()}")

    _store_run(ctx, go)
