"""`gex-alertd reload --wait` (the unit's ExecReload= on systemd < 253) against the real daemon
as a subprocess: it returns only after the reload is over (held open by a channel whose
in-flight delivery the test holds), exits 0 when applied and 1 with the problems when refused."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from aiohttp import web

from gex_alertd.ops import reload_status
from tests.ops import test_signals as signals
from tests.ops.test_signals import GEX_ALERTD, Daemon, Notifications, Receiver, Setup
from tests.support.wait import WAIT_S, eventually


class CountingReceiver(Receiver):
    """Counts requests as they arrive, before `release` lets them be answered."""

    def __init__(self) -> None:
        super().__init__()
        self.arrivals = 0

    async def _hook(self, request: web.Request) -> web.Response:
        self.arrivals += 1
        return await super()._hook(request)


@pytest.fixture
async def receiver() -> AsyncIterator[CountingReceiver]:
    r = CountingReceiver()
    await r.start()
    yield r
    await r.stop()


notify = signals.notify  # the sd_notify socket, as the signal tests set it up


def _config(setup: Setup, **kw: str) -> str:
    # a long client timeout and drain: a held delivery holds the channel's restart, and so
    # the reload, until the test releases it
    return (
        setup.config_text(**kw)
        .replace(
            "    secret: ${WEBHOOK_SECRET}", "    secret: ${WEBHOOK_SECRET}\n    timeout_s: 120"
        )
        .replace("drain_timeout: 15s", "drain_timeout: 120s")
    )


async def _reload(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        GEX_ALERTD, "reload", *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


async def test_reload_wait_returns_after_the_reload_with_its_outcome(
    tmp_path: Path,
    redis: aioredis.Redis,
    redis_url: str,
    receiver: CountingReceiver,
    notify: Notifications,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runtime = tmp_path / "run"
    runtime.mkdir()
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(runtime))  # as RuntimeDirectory= sets it
    setup = Setup(tmp_path, redis_url, receiver)
    setup.config.write_text(_config(setup))
    daemon: Daemon = await setup.start(notify)
    status = runtime / reload_status.FILE_NAME
    try:
        await notify.wait_for("READY=1")
        assert reload_status.read(status).pid == daemon.proc.pid

        # refused: exit 1, the problems on stderr, the daemon keeps running
        setup.config.write_text(_config(setup, direction="sideways"))
        proc = await _reload()
        out, err = await asyncio.wait_for(proc.communicate(), WAIT_S)
        assert proc.returncode == 1, (out, err)
        assert b"reload refused" in err and b"rules[1].direction" in err
        assert daemon.proc.returncode is None

        # applied, while a delivery of the channel being changed is held open
        await daemon.wait_log(lambda e: e.get("event") == "alert_fired")
        receiver.release.clear()
        await eventually(lambda: receiver.arrivals > 0, "a delivery to the receiver")
        setup.config.write_text(_config(setup, symbols="[SPY, QQQ]").replace(
            "    timeout_s: 120", "    timeout_s: 110"))  # fmt: skip
        proc = await _reload("--pid", str(daemon.proc.pid))
        await eventually(
            lambda: reload_status.read(status).requested == 2, "the daemon to count the SIGHUP"
        )
        # the reload cannot be over: the channel's restart waits for the held delivery
        assert proc.returncode is None
        assert "config reloaded" not in daemon.output()
        receiver.release.set()
        out, err = await asyncio.wait_for(proc.communicate(), WAIT_S)
        assert proc.returncode == 0, (out, err)
        assert b"config reloaded" in out
        # by the time it returned the daemon had applied the new config
        assert any(e.get("event") == "config reloaded" for e in daemon.events())
        state = reload_status.read(status)
        assert (state.done, state.outcome) == (2, "applied")
    finally:
        receiver.release.set()
        if daemon.proc.returncode is None:
            daemon.proc.kill()
            await daemon.proc.wait()


async def test_reload_without_a_status_file_says_why(tmp_path: Path) -> None:
    proc = await _reload("--status-file", str(tmp_path / "missing.json"))
    _out, err = await asyncio.wait_for(proc.communicate(), WAIT_S)
    assert proc.returncode == 1
    assert b"no reload status at" in err and b"Traceback" not in err


def test_status_counts_signals_and_reloads(tmp_path: Path) -> None:
    path = tmp_path / "reload.json"
    st = reload_status.ReloadStatus(path, pid=42)
    st.start()
    assert reload_status.read(path) == reload_status.ReloadState(pid=42)
    st.requested()
    began = st.begin()
    st.requested()  # arrives during the reload: served by the next one
    st.finish(began, "refused", ["rules[0].type: nope"])
    state = reload_status.read(path)
    assert (state.requested, state.done, state.outcome) == (2, 1, "refused")
    assert state.problems == ["rules[0].type: nope"]
    st.finish(st.begin(), "applied")
    assert reload_status.read(path).done == 2
    unwritable = reload_status.ReloadStatus(tmp_path / "no" / "such" / "dir.json", pid=1)
    unwritable.requested()  # logged, never raised: a reload must not fail on it
    assert reload_status.default_path({"RUNTIME_DIRECTORY": "/run/a:/run/b"}) == Path(
        "/run/a/reload.json"
    )
    assert reload_status.default_path({}) is None
