"""`gex-alertd web`: the live page on its own, reading the Redis a daemon writes (so a page
can run next to a daemon on another host). Read-only; the same ops server, auth included."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

import click
import structlog

from gex_alertd import redaction
from gex_alertd.commands import CONFIG_OPTION, load_or_exit
from gex_alertd.config import Config
from gex_alertd.ops.listen import bind_problem, parse_listen

log = structlog.get_logger(__name__)
DEFAULT_LISTEN = "127.0.0.1:9109"  # next to a daemon's ops server on 9108


@click.command()
@CONFIG_OPTION
@click.option("--listen", default=None, metavar="HOST:PORT",
              help=f"Where to serve the page (default: {DEFAULT_LISTEN}).")  # fmt: skip
def web(config_path: Path, listen: str | None) -> None:
    """Serve the live page (heatmap, profiles, alerts) from the daemon's Redis."""
    cfg = load_or_exit(config_path)
    listen = listen or DEFAULT_LISTEN
    try:
        host, _port = parse_listen(listen)
    except ValueError as exc:
        why = str(exc).removeprefix("ops.listen: ")
        raise click.BadParameter(why, param_hint="--listen") from None
    problem = bind_problem(host, cfg.ops.auth_token)
    if problem:
        click.echo(f"error: invalid config {config_path}:", err=True)
        click.echo(f"  ops.auth_token: {problem} (--listen {listen})", err=True)
        sys.exit(2)
    from gex_alertd.ops.logging import configure

    configure(cfg.ops.log_format, cfg.ops.log_level)
    try:
        asyncio.run(serve(cfg, listen))
    except (ConnectionError, OSError) as exc:
        click.echo(f"error: {redaction.redact(str(exc))}", err=True)
        sys.exit(1)


async def serve(cfg: Config, listen: str, stop: asyncio.Event | None = None) -> None:
    from gex_alertd.connections import REDIS_DOWN, connect_config
    from gex_alertd.ops.http import OpsServer
    from gex_alertd.web.routes import LivePage

    redis = connect_config(cfg.redis, client_name="gex-alertd-web")
    page = LivePage(redis, cfg.watch.entries)

    async def health() -> dict[str, Any]:
        try:
            await redis.ping()
            return {"ok": True, "redis": "ok"}
        except REDIS_DOWN as exc:
            return {"ok": False, "redis": redaction.redact(str(exc))}

    server = OpsServer(listen, health, auth_token=cfg.ops.auth_token, mounts=(page.mount,))
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await server.start()
        click.echo(f"live page on http://{server.host}:{server.port}/", err=True)
        await stop.wait()
    finally:
        await server.stop()
        await redis.aclose()
