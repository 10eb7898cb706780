"""SIGHUP with a hostile config (issue 17 item 4): the real daemon process keeps serving
/healthz while the new file is read, and refuses a billion-laughs file.

The file being read is a FIFO swapped in for the config: its read blocks until the test
writes, so "the loop kept serving while the reload was reading" is checked while the read is
certainly still in progress, with no timing involved. Before the fix the load ran on the event
loop, so /healthz did not answer at all until the read returned.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gex_alertd import config as config_mod
from gex_alertd.config import ConfigError
from tests.hostile.support_config import CONFIGS
from tests.reliability.support import GEX_ALERTD, clean_env
from tests.support.daemon_log import json_events
from tests.support.redis_server import free_port
from tests.support.wait import WAIT_S, eventually


class Daemon:
    def __init__(self, tmp: Path, redis_url: str) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.config = tmp / "config.yaml"
        self.log = tmp / "daemon.log"
        self.config.write_text(
            f"""
source: {{kind: simulator, simulator: {{speed: 10, cache_s: 0}}}}
redis: {{url: "{redis_url}"}}
watch: {{interval_s: 0.2, jitter_s: 0, symbols: [SPY]}}
channels: {{tty: {{type: console}}}}
rules:
  - {{name: spy-flip, type: flip_cross, symbols: [SPY], direction: any, channels: [tty]}}
ops: {{listen: "127.0.0.1:{self.port}", log_format: json}}
"""
        )
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with self.log.open("wb") as out:
            self.proc = await asyncio.create_subprocess_exec(
                GEX_ALERTD, "run", "--config", str(self.config), "--no-uvloop",
                stdout=out, stderr=asyncio.subprocess.STDOUT, env=clean_env(), cwd=self.tmp,
            )  # fmt: skip

    def events(self) -> list[dict[str, Any]]:
        return json_events(self.log)

    async def health(self) -> int:
        timeout = aiohttp.ClientTimeout(total=WAIT_S)
        async with (
            aiohttp.ClientSession(timeout=timeout) as http,
            http.get(f"http://127.0.0.1:{self.port}/healthz") as r,
        ):
            return r.status


@pytest.fixture
async def daemon(tmp_path: Path, redis_url: str) -> AsyncIterator[Daemon]:
    d = Daemon(tmp_path, redis_url)
    await d.start()
    yield d
    if d.proc is not None and d.proc.returncode is None:
        d.proc.kill()
        await d.proc.wait()


async def test_sighup_reads_off_the_loop_and_refuses_a_billion_laughs(daemon: Daemon) -> None:
    assert daemon.proc is not None

    async def healthy() -> bool:
        try:
            return await daemon.health() == 200
        except aiohttp.ClientError:
            return False

    await eventually(healthy, "the daemon to serve /healthz")

    # the config becomes a FIFO: the reload's read blocks until something is written to it
    fifo = daemon.tmp / "incoming.fifo"
    os.mkfifo(fifo)
    os.replace(fifo, daemon.config)
    daemon.proc.send_signal(signal.SIGHUP)
    # the reload is under way (its read cannot return before the write below) and the
    # daemon still answers, several times over
    for _ in range(3):
        assert await asyncio.wait_for(daemon.health(), WAIT_S) == 200
    assert not any("reload" in str(e.get("event")) for e in daemon.events())

    bomb = (CONFIGS / "billion_laughs.yaml").read_bytes()

    def write_fifo() -> None:
        with open(daemon.config, "wb") as f:  # returns once the daemon's thread has it open
            f.write(bomb)

    await asyncio.wait_for(asyncio.to_thread(write_fifo), WAIT_S)

    async def refused() -> bool:
        return any("reload refused" in str(e.get("event")) for e in daemon.events())

    await eventually(refused, "the reload to be refused")
    (event,) = [e for e in daemon.events() if "reload refused" in str(e.get("event"))]
    assert any("aliases expand to more than 10000 nodes" in p for p in event["problems"]), event
    assert await daemon.health() == 200
    daemon.proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(daemon.proc.wait(), WAIT_S) == 0


async def test_a_load_that_never_finishes_is_refused_after_the_bound(tmp_path: Path) -> None:
    fifo = tmp_path / "config.yaml"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError) as err:
        await config_mod.load_off_loop(fifo, timeout_s=0.2)  # nothing ever writes: no race
    assert err.value.problems == ["not loaded within 0.2 s (is it a pipe, or on a hung mount?)"], (
        err.value.problems
    )
    # let the abandoned reader finish (an empty document) so the thread ends with the test
    await asyncio.to_thread(lambda: open(fifo, "wb").close())
