"""The real `gex-alertd run` with `market_hours: nyse`: the NYSE table comes from the export
child, never from pandas in the daemon's own process; a restart reads it from Redis; a broken
export is a startup error naming the cause (exit 2)."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import redis.asyncio as aioredis

from gex_alertd import keys
from tests.reliability.support import GEX_ALERTD, clean_env, spawn
from tests.support.redis_server import RedisServer


def write_config(tmp: Path, url: str) -> Path:
    path = tmp / "config.yaml"
    path.write_text(
        f'redis: {{url: "{url}"}}\n'
        "watch: {symbols: [SPY], market_hours: nyse, premarket: true}\n"
        "ops: {listen: null, log_format: json}\n"
    )
    return path


def mapped(pid: int) -> str:
    """Every file the process has mapped: a shared library of pandas would be among them."""
    return Path(f"/proc/{pid}/maps").read_text()


async def test_the_daemon_answers_nyse_hours_without_pandas_and_reuses_the_table(
    tmp_path: Path, redis_server: RedisServer, redis: aioredis.Redis
) -> None:
    config = write_config(tmp_path, redis_server.url)
    args = [GEX_ALERTD, "run", "--config", str(config), "--no-uvloop"]
    first = await spawn(args, tmp_path / "first.log", tmp_path)
    try:
        await first.wait_log("gex-alertd started")
        assert "NYSE calendar loaded" in first.output()
        maps = mapped(first.proc.pid)
        assert "site-packages" in maps or "python" in maps  # the check can see libraries
        assert "pandas" not in maps and "exchange_calendars" not in maps
        assert "market session" in first.output()  # the gate answered from the table
    finally:
        assert await first.stop() == 0, first.output()[-3000:]
    assert await redis.strlen(keys.CALENDAR_NYSE) > 10_000  # about two years of sessions

    second = await spawn(args, tmp_path / "second.log", tmp_path)
    try:
        await second.wait_log("gex-alertd started")
        assert "NYSE calendar loaded" not in second.output()  # from Redis: no export child
    finally:
        assert await second.stop() == 0, second.output()[-3000:]


def test_a_broken_calendar_export_is_a_startup_error_naming_the_cause(
    tmp_path: Path, private_redis: RedisServer
) -> None:
    # the export child runs with the daemon's environment: a package of that name that cannot
    # be imported stands for a broken install
    fake = tmp_path / "fake" / "exchange_calendars"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('exchange_calendars is broken here')\n")
    config = write_config(tmp_path, private_redis.url)  # no cached table in it
    done = subprocess.run(
        [GEX_ALERTD, "run", "--config", str(config), "--no-uvloop"],
        capture_output=True,
        text=True,
        timeout=300,
        env=clean_env(PYTHONPATH=str(fake.parent)),
    )
    assert done.returncode == 2, done.stdout[-3000:] + done.stderr[-3000:]
    assert "watch.market_hours: nyse: NYSE calendar export (" in done.stderr
    assert "failed (exit status 1): ImportError: exchange_calendars is broken here" in done.stderr
    assert "Traceback" not in done.stderr and "gex-alertd started" not in done.stdout


async def test_a_reload_to_nyse_without_a_table_is_refused_and_the_old_config_runs(
    tmp_path: Path, private_redis: RedisServer
) -> None:
    fake = tmp_path / "fake" / "exchange_calendars"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('exchange_calendars is broken here')\n")
    config = write_config(tmp_path, private_redis.url)
    nyse = config.read_text()
    config.write_text(nyse.replace("market_hours: nyse, premarket: true", "market_hours: always"))
    daemon = await spawn(
        [GEX_ALERTD, "run", "--config", str(config), "--no-uvloop"],
        tmp_path / "daemon.log",
        tmp_path,
        clean_env(PYTHONPATH=str(fake.parent)),
    )
    try:
        await daemon.wait_log("gex-alertd started")  # always: no table needed, none loaded
        config.write_text(nyse)
        daemon.proc.send_signal(signal.SIGHUP)
        await daemon.wait_log("reload refused")
        refused = [e for e in daemon.events() if e.get("event", "").startswith("reload refused")]
        assert "watch.market_hours: nyse: NYSE calendar export (" in refused[0]["problems"][0]
        assert "ImportError: exchange_calendars is broken here" in refused[0]["problems"][0]
        assert daemon.alive
    finally:
        assert await daemon.stop() == 0, daemon.output()[-3000:]
