"""`gex-alertd simulate`: serve the simulated Flow GEX API until Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path

import click
import structlog

from gex_alertd.config import SimulatorOptions
from gex_alertd.sources.simulator.embedded import make_app, serve
from gex_alertd.sources.simulator.scenario import Scenario, ScenarioError, load_scenario
from gex_alertd.sources.simulator.server import SIMULATOR

log = structlog.get_logger()


@click.command()
@click.option("--port", type=click.IntRange(0, 65535), default=8700, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--scenario", "scenario", default=None, help="Scenario YAML file, or `demo`.")
@click.option("--speed", type=float, default=1.0, show_default=True,
              help="Simulated seconds per wall second.")  # fmt: skip
@click.option("--cache-s", type=float, default=15.0, show_default=True,
              help="Provider snapshot cache; 0 = a fresh snapshot per model tick.")  # fmt: skip
@click.option("--api-key", default="sim-key", show_default=True, envvar="FLASHALPHA_API_KEY",
              help="The key clients must send in X-Api-Key (Alpha plan).")  # fmt: skip
@click.option("--symbols", default="", help="Symbols to build at start, e.g. SPY,QQQ.")
@click.option("--rate-limit", type=int, default=0, show_default=True,
              help="Requests per minute per key (429 + Retry-After beyond); 0 = none.")  # fmt: skip
def simulate(
    port: int, host: str, seed: int, scenario: str | None, speed: float, cache_s: float,
    api_key: str, symbols: str, rate_limit: int,
) -> None:  # fmt: skip
    """Serve the embedded Flow GEX API on a port (same wire format as the provider)."""
    syms = [s.strip().upper() for s in symbols.split(",") if s.strip()]
    options = SimulatorOptions(
        seed=seed, scenario=scenario, speed=speed, cache_s=cache_s, symbols=syms,
        rate_limit_per_min=rate_limit,
    )  # fmt: skip
    problems = options.problems()
    if problems:
        raise click.BadParameter("; ".join(f"{k}: {v}" for k, v in problems))
    try:
        sc = load_scenario(scenario, Path.cwd()) if scenario else None
    except ScenarioError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        asyncio.run(_serve(options, sc, api_key, host, port))
    except KeyboardInterrupt:
        pass


async def _serve(
    options: SimulatorOptions, scenario: Scenario | None, api_key: str, host: str, port: int
) -> None:
    app = make_app(options, api_key, scenario or Scenario())
    for sym in options.symbols:
        app[SIMULATOR].market(sym)
    try:
        handle = await serve(app, host, port)
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    click.echo(f"Flow GEX simulator on {handle.base_url}  (X-Api-Key required; Ctrl-C stops)")
    click.echo(f"  try: curl -H 'X-Api-Key: <key>' {handle.base_url}/v1/flow/gex/SPY")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await handle.close()
