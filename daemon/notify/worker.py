"""Run only the delivery side: `python -m gex_alertd.notify.worker --config F [--redis URL]`.

Used by the crash tests (SIGKILL mid-send, restart) and handy to drain an outbox without
polling. SIGTERM/SIGINT drain within `outbox.drain_timeout` and exit 0.
"""

from __future__ import annotations

import asyncio
import signal

import click
import msgspec

from gex_alertd import config as config_mod
from gex_alertd.connections import connect_config, describe, wait_until_reachable
from gex_alertd.notify.dispatch import Dispatcher
from gex_alertd.notify.silences import SilenceStore


async def serve(cfg: config_mod.Config, consumer: str | None) -> None:
    client = connect_config(cfg.redis, client_name="gex-alertd-notify")
    await wait_until_reachable(client, describe(cfg.redis))
    # the silences every daemon holds back are held back here too (matched at delivery)
    dispatcher = Dispatcher(client, cfg, consumer=consumer, silences=SilenceStore(client))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await dispatcher.start()
    print("worker ready", flush=True)  # the tests wait for this line
    await stop.wait()
    await dispatcher.stop()
    await client.aclose()


@click.command()
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False))
@click.option("--redis", "redis_url", default=None, help="Override redis.url of the config.")
@click.option("--consumer", default=None, help="Consumer name (default: hostname:main).")
def main(config_path: str, redis_url: str | None, consumer: str | None) -> None:
    try:
        cfg = config_mod.load(config_path)
    except config_mod.ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    if redis_url:
        cfg = msgspec.structs.replace(cfg, redis=cfg.redis.with_url(redis_url))
    from gex_alertd.ops.logging import configure

    configure(cfg.ops.log_format, cfg.ops.log_level)
    asyncio.run(serve(cfg, consumer))


if __name__ == "__main__":
    main()
