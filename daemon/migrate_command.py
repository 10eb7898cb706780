"""`gex-alertd migrate`: the command around `migrate` (what it would move, or the move)."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from gex_alertd import keys
from gex_alertd.cli_redis import run_on_redis
from gex_alertd.commands import CONFIG_OPTION, load_or_exit
from gex_alertd.config import Config
from gex_alertd.migrate import Plan, Summary, migrate, plan

MAX_ROWS = 200  # a dry run lists this many moves, then counts the rest


@click.command(name="migrate")
@CONFIG_OPTION
@click.option("--dry-run", is_flag=True, help="Print what would move; write nothing.")
def migrate_command(config_path: Path, dry_run: bool) -> None:
    """Move what the single outbox of earlier releases (gex:alerts) still owes onto the
    per-symbol outboxes (gex:{SYM}:alerts), each owed alert once per channel."""
    cfg = load_or_exit(config_path)
    console = Console()
    targets = [(t.symbol, t.expiry) for t in cfg.watch.entries()]
    result = run_on_redis(_go(cfg, dry_run), cfg.redis, targets)  # exit 2: credentials, 1: Redis
    if isinstance(result, Plan):
        _print_plan(console, result)
    else:
        _print_summary(console, result)


async def _go(cfg: Config, dry_run: bool) -> Plan | Summary:
    from gex_alertd.connections import connect_config

    redis = connect_config(cfg.redis, client_name="gex-alertd-migrate")
    try:
        return await plan(redis) if dry_run else await migrate(redis)
    finally:
        await redis.aclose()


def _print_plan(console: Console, p: Plan) -> None:
    if not p.found:
        console.print(f"nothing to migrate: {keys.LEGACY_ALERTS} does not exist", highlight=False)
        return
    table = Table(title=f"What {keys.LEGACY_ALERTS} still owes (dry run: nothing written)")
    for name in ("legacy entry", "alert", "to outbox", "channels owed", "note"):
        table.add_column(name)
    for m in p.moves[:MAX_ROWS]:
        note = "to gex:dead: " + m.reason if m.event is None else ""
        cells = (m.entry_id, m.alert_id, keys.outbox(m.symbol), ", ".join(m.channels), note)
        table.add_row(*(Text(c) for c in cells))  # stored text, never rich markup
    console.print(table)
    if len(p.moves) > MAX_ROWS:
        console.print(f"... and {len(p.moves) - MAX_ROWS} more", highlight=False)
    owed = sum(len(m.channels) for m in p.moves)
    console.print(
        f"{p.entries} legacy entries: {len(p.moves)} to move ({owed} deliveries owed), "
        f"{p.sent} already sent (markers to copy), {p.delivered} delivered or not routed",
        highlight=False,
    )


def _print_summary(console: Console, s: Summary) -> None:
    if not s.plan.found:
        console.print(f"nothing to migrate: {keys.LEGACY_ALERTS} does not exist", highlight=False)
        return
    line = ", ".join(f"{k} {v}" for k, v in s.line().items())
    console.print(f"migrated: {line}", highlight=False)
