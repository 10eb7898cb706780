"""Build and start the simulator: for the daemon (start_embedded), the `simulate` command and
tests (make_app / make_simulator with a ManualClock)."""

from __future__ import annotations

import socket
from pathlib import Path

import structlog
from aiohttp import web

from gex_alertd.config import SimulatorOptions
from gex_alertd.sources.simulator.clock import Clock, ManualClock, RealClock
from gex_alertd.sources.simulator.engine import Simulator
from gex_alertd.sources.simulator.scenario import Scenario, load_scenario, loads_scenario
from gex_alertd.sources.simulator.server import SIMULATOR, ServerSettings, build_app

log = structlog.get_logger()


def resolve_scenario(
    scenario: Scenario | str | Path | None, base_dir: Path | None = None
) -> Scenario:
    """A Scenario, YAML text (anything with a newline), `demo`, a path, or None."""
    if scenario is None:
        return Scenario()
    if isinstance(scenario, Scenario):
        return scenario
    text = str(scenario)
    if isinstance(scenario, str) and "\n" in text:
        return loads_scenario(text, "scenario text")
    return load_scenario(text, base_dir)


def make_simulator(
    options: SimulatorOptions, scenario: Scenario | str | Path | None = None,
    clock: Clock | None = None, base_dir: Path | None = None,
) -> Simulator:  # fmt: skip
    sc = resolve_scenario(scenario if scenario is not None else options.scenario, base_dir)
    if clock is None:
        clock = RealClock(sc.start, options.speed)
    elif isinstance(clock, ManualClock) and not clock.explicit_start and sc.start is not None:
        clock.start = sc.start
    return Simulator(sc, clock, seed=options.seed, cache_s=options.cache_s)


def make_app(
    options: SimulatorOptions, api_key: str, scenario: Scenario | str | Path | None = None,
    clock: Clock | None = None, keys: dict[str, str] | None = None,
    base_dir: Path | None = None,
) -> web.Application:  # fmt: skip
    """An aiohttp app serving the simulated provider. `api_key` gets the Alpha plan; `keys`
    adds more (key -> plan, e.g. {"basic-key": "basic"} to exercise 403)."""
    sim = make_simulator(options, scenario, clock, base_dir)
    all_keys = {**(keys or {}), api_key: "alpha"}
    return build_app(sim, ServerSettings(all_keys, options.rate_limit_per_min))


class EmbeddedSimulator:
    def __init__(self, runner: web.AppRunner, host: str, port: int, app: web.Application):
        self._runner = runner
        self.app = app
        self.host = host
        self.port = port
        self.base_url = f"http://{host}:{port}"

    @property
    def simulator(self) -> Simulator:
        return self.app[SIMULATOR]

    async def close(self) -> None:
        await self._runner.cleanup()


async def serve(app: web.Application, host: str = "127.0.0.1", port: int = 0) -> EmbeddedSimulator:
    """Serve `app` on host:port (0 = a free port) and return the handle."""
    # a short shutdown_timeout: a scripted timeout/slow fault may hold a handler for a while,
    # and closing the simulator must not keep the daemon's shutdown waiting on it
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
    await runner.setup()
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        await runner.cleanup()
        raise
    site = web.SockSite(runner, sock)
    await site.start()
    return EmbeddedSimulator(runner, host, sock.getsockname()[1], app)


async def start_embedded(
    options: SimulatorOptions, symbols: list[str], api_key: str, *, base_dir: Path | None = None,
    clock: Clock | None = None,
) -> EmbeddedSimulator:  # fmt: skip
    """Serve the simulator on 127.0.0.1 on a free port. `options.scenario` may be `demo`, an
    absolute path, or a path relative to `base_dir` (pass the config file's directory, or
    resolve it first with gex_alertd.config.resolve_relative)."""
    app = make_app(options, api_key, clock=clock, base_dir=base_dir)
    sim = app[SIMULATOR]
    for sym in [*symbols, *options.symbols]:
        sim.market(sym.upper())  # build chains now, not on the first poll
    handle = await serve(app)
    log.info(
        "embedded simulator serving", base_url=handle.base_url, scenario=options.scenario,
        seed=options.seed, speed=options.speed,
    )  # fmt: skip
    return handle
