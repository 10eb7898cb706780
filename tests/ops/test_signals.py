"""The daemon as systemd runs it: `gex-alertd run` as a subprocess on the embedded simulator,
a real redis-server, sd_notify on a real AF_UNIX datagram socket, secrets from a credentials
directory, a real webhook receiver, signals from outside.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from gex_alertd.model import decode_channels
from tests.support.daemon_log import json_events
from tests.support.outbox import all_entries
from tests.support.redis_server import free_port
from tests.support.wait import WAIT_S, eventually

GEX_ALERTD = str(Path(sys.executable).with_name("gex-alertd"))


# --- parts -------------------------------------------------------------------------------


class Receiver:
    """Webhook endpoint that records alert ids; `hold` keeps requests waiting until released."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.release = asyncio.Event()
        self.release.set()
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hooks/{token}", self._hook)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = self.runner.addresses[0][1]

    async def _hook(self, request: web.Request) -> web.Response:
        body = await request.json()
        await self.release.wait()
        self.ids.append(body["id"])
        return web.Response(status=204)

    async def stop(self) -> None:
        self.release.set()
        if self.runner is not None:
            await self.runner.cleanup()


class Notifications:
    """The systemd side of $NOTIFY_SOCKET: every datagram, in arrival order."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.messages: list[list[str]] = []
        self._new = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            data = await loop.sock_recv(self.sock, 65536)
            async with self._new:
                self.messages.append(data.decode().split("\n"))
                self._new.notify_all()

    async def wait_for(self, field: str, after: int = 0) -> int:
        """Index of the first message at or after `after` that has `field` (e.g. READY=1)."""

        def found() -> int | None:
            for i in range(after, len(self.messages)):
                if field in self.messages[i]:
                    return i
            return None

        async with self._new:
            await asyncio.wait_for(self._new.wait_for(lambda: found() is not None), WAIT_S)
        idx = found()
        assert idx is not None
        return idx

    def firsts(self) -> list[str]:
        return [m[0].split("=")[0] for m in self.messages]

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self.sock.close()


class Daemon:
    def __init__(self, proc: asyncio.subprocess.Process, log: Path, ops_port: int) -> None:
        self.proc = proc
        self.log = log
        self.ops = f"http://127.0.0.1:{ops_port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def events(self) -> list[dict[str, Any]]:
        return json_events(self.log)

    async def wait_log(self, pred: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        async with asyncio.timeout(WAIT_S):
            while True:
                for ev in self.events():
                    if pred(ev):
                        return ev
                assert self.proc.returncode is None, f"daemon exited:\n{self.output()[-3000:]}"
                await asyncio.sleep(0.05)

    async def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        async with aiohttp.ClientSession() as http, http.get(f"{self.ops}/metrics") as r:
            assert r.status == 200
            text = await r.text()
        out = {}
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return out

    async def health(self) -> tuple[int, dict[str, Any]]:
        async with aiohttp.ClientSession() as http, http.get(f"{self.ops}/healthz") as r:
            return r.status, await r.json()

    async def signal_and_wait(self, sig: int) -> int:
        self.proc.send_signal(sig)
        return await asyncio.wait_for(self.proc.wait(), WAIT_S)


class Setup:
    def __init__(self, tmp: Path, redis_url: str, receiver: Receiver) -> None:
        self.tmp = tmp
        self.redis_url = redis_url
        self.receiver = receiver
        self.ops_port = free_port()
        self.secrets = {
            "FLASHALPHA_API_KEY": "fa-live-" + secrets.token_hex(16),
            "WEBHOOK_SECRET": "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode(),
            "HOOK_TOKEN": "T" + secrets.token_hex(12),
            "DEAD_TOKEN": "D" + secrets.token_hex(12),
        }
        self.creds = tmp / "credentials"
        self.creds.mkdir()
        for name, value in self.secrets.items():
            (self.creds / name).write_text(value + "\n")
        self.config = tmp / "config.yaml"
        self.scenario = tmp / "scenario.yaml"
        # the spot jumps across 600 every 2 simulated seconds (0.2 s of wall time at speed 10),
        # so the threshold rule fires on every poll that sees a jump
        events = [
            f"  - {{at: {2 + 2 * i}s, do: spot, symbol: SPY, to: {610 if i % 2 == 0 else 590}}}"
            for i in range(600)
        ]
        self.scenario.write_text(
            "tick_s: 1\nsymbols:\n  SPY: {spot: 590, annual_vol: 0.01, strikes: 40}\n"
            "events:\n" + "\n".join(events) + "\n"
        )

    def config_text(self, symbols: str = "[SPY]", direction: str = "any") -> str:
        dead_port = free_port()  # nothing listens there: deliveries fail and get logged
        return f"""
source:
  kind: simulator
  api_key: ${{FLASHALPHA_API_KEY}}
  simulator: {{speed: 10, cache_s: 0, scenario: {self.scenario.name}}}
redis: {{url: "{self.redis_url}"}}
watch: {{interval_s: 0.1, jitter_s: 0, market_hours: always, symbols: {symbols}}}
channels:
  ops:
    type: webhook
    url: http://127.0.0.1:{self.receiver.port}/hooks/${{HOOK_TOKEN}}
    secret: ${{WEBHOOK_SECRET}}
  broken:
    type: webhook
    url: http://127.0.0.1:{dead_port}/hooks/${{DEAD_TOKEN}}
    max_attempts: 2
    retry_base_s: 0.05
    retry_max_s: 0.1
rules:
  - {{name: spy-level, type: threshold, field: underlying_price, above: 600, below: 600,
     symbols: [SPY], cooldown: 0s, severity: warning, channels: [ops, broken]}}
  - {{name: spy-flip, type: flip_cross, symbols: [SPY], direction: {direction}, band_pct: 0,
     cooldown: 0s, channels: [ops]}}
outbox: {{drain_timeout: 15s}}
ops: {{listen: "127.0.0.1:{self.ops_port}", log_format: json, log_level: debug}}
"""

    async def start(
        self,
        notify: Notifications,
        log_name: str = "daemon.log",
        stdout: int | None = None,
        *,
        hup_blocked: bool = False,
    ) -> Daemon:
        """`gex-alertd run`; `hup_blocked`: with SIGHUP blocked from its first instruction (the
        mask is inherited across fork and exec), so a SIGHUP sent at once waits, pending, until
        the daemon lets it through, however slowly the interpreter starts."""
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "CREDENTIALS_DIRECTORY")
            and k not in self.secrets
        }
        env.update(
            NOTIFY_SOCKET=str(notify.path),
            WATCHDOG_USEC="400000",  # a ping every 0.2 s
            CREDENTIALS_DIRECTORY=str(self.creds),
        )
        log = self.tmp / log_name
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP} if hup_blocked else ())
        try:
            with log.open("wb") as out:
                proc = await asyncio.create_subprocess_exec(
                    GEX_ALERTD, "run", "--config", str(self.config), "--no-uvloop",
                    stdout=out if stdout is None else stdout,
                    stderr=out if stdout is not None else asyncio.subprocess.STDOUT,
                    env=env, cwd=self.tmp,
                )  # fmt: skip
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        return Daemon(proc, log, self.ops_port)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    yield r
    await r.stop()


@pytest.fixture
async def notify(tmp_path: Path) -> AsyncIterator[Notifications]:
    n = Notifications(tmp_path / "notify.sock")
    n.start()
    yield n
    await n.close()


@pytest.fixture
async def setup(
    tmp_path: Path, redis: aioredis.Redis, redis_url: str, receiver: Receiver
) -> AsyncIterator[Setup]:
    s = Setup(tmp_path, redis_url, receiver)
    s.config.write_text(s.config_text())
    yield s


@pytest.fixture
async def daemon(setup: Setup, notify: Notifications) -> AsyncIterator[Daemon]:
    d = await setup.start(notify)
    yield d
    if d.proc.returncode is None:
        d.proc.kill()
        await d.proc.wait()


def counter(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def alert_ids(redis: aioredis.Redis, channel: str) -> set[str]:
    got = await all_entries(redis)
    return {f[b"id"].decode() for f in got if channel in decode_channels(f[b"channels"])}


# --- tests -------------------------------------------------------------------------------


async def test_lifecycle_notify_metrics_drain_and_no_secrets(
    setup: Setup, daemon: Daemon, notify: Notifications, receiver: Receiver, redis: aioredis.Redis
) -> None:
    ready = await notify.wait_for("READY=1")
    first_ping = await notify.wait_for("WATCHDOG=1")
    assert ready < first_ping, notify.messages
    assert "WATCHDOG" not in notify.firsts()[:ready]
    await notify.wait_for("WATCHDOG=1", after=first_ping + 1)  # pinged from the loop, repeatedly
    status = [f for m in notify.messages for f in m if f.startswith("STATUS=")]
    assert status and "1 symbols" in status[0], status

    code, health = await daemon.health()
    assert code == 200 and health["ok"] and health["redis"] is True
    # the engine tells what it owns and how its targets are served
    engine = health["engine"]
    assert engine["owned"] == engine["targets"] == 1 and engine["instance"] in engine["members"]
    assert engine["overdue_s"] >= 0 and engine["target_interval_s"] > 0
    assert engine["heartbeat_age_s"] is not None and engine["heartbeat_age_s"] >= 0
    (spy,) = health["symbols"].values()
    assert spy["owned"] is True and spy["target_interval_s"] == engine["target_interval_s"]

    # /metrics parses and its counters move
    before = await daemon.metrics()
    await daemon.wait_log(lambda e: e.get("event") == "alert_fired")
    async with asyncio.timeout(WAIT_S):
        while True:
            after = await daemon.metrics()
            polled = counter(after, "gexalertd_polls_total", status="ok")
            stored = counter(after, "gexalertd_snapshots_stored_total")
            fired = counter(after, "gexalertd_alerts_fired_total", rule="spy-level")
            if (
                polled > counter(before, "gexalertd_polls_total", status="ok")
                and stored > counter(before, "gexalertd_snapshots_stored_total")
                and fired >= 1
            ):
                break
            await asyncio.sleep(0.1)
    assert ("gexalertd_request_latency_seconds_count", ()) in after
    assert counter(after, "gexalertd_request_latency_seconds_count") > 0

    # hold deliveries so alerts are queued in the outbox when SIGTERM arrives
    receiver.release.clear()

    async def backlog() -> bool:
        return len(await alert_ids(redis, "ops")) >= len(receiver.ids) + 2

    await eventually(backlog, "2 alerts queued behind the held receiver")
    n_before_term = len(notify.messages)
    daemon.proc.send_signal(signal.SIGTERM)
    stopping = await notify.wait_for("STOPPING=1", after=n_before_term)
    receiver.release.set()
    code = await asyncio.wait_for(daemon.proc.wait(), WAIT_S)
    assert code == 0, daemon.output()[-3000:]
    assert "READY=1" not in [f for m in notify.messages[stopping:] for f in m]

    # No queued alert is lost: what the drain did not deliver is still owed in Redis and
    # goes out after the next start, and nothing is sent twice.
    queued = await alert_ids(redis, "ops")
    assert queued and set(receiver.ids) <= queued
    first_output = daemon.output()
    mark = len(notify.messages)
    again = await setup.start(notify, "daemon2.log")
    try:
        await notify.wait_for("READY=1", after=mark)

        async def delivered() -> bool:
            return queued <= set(receiver.ids)

        await eventually(delivered, "every queued alert delivered after the restart")
        assert await again.signal_and_wait(signal.SIGTERM) == 0
    finally:
        if again.proc.returncode is None:
            again.proc.kill()
    assert len(receiver.ids) == len(set(receiver.ids)), "an alert was delivered twice"

    # polling stopped before exit: nothing was written after it
    snaps = await redis.xlen("gex:{SPY}:snap")
    await asyncio.sleep(0.3)
    assert await redis.xlen("gex:{SPY}:snap") == snaps

    # a run that used every secret (upstream key, signing secret, webhook URL tokens, failed
    # deliveries to a URL with a token) left none of them in its output
    text = first_output + again.output()
    assert any(e.get("event") == "alert_fired" for e in daemon.events())
    for name, value in setup.secrets.items():
        assert value not in text, f"{name} leaked into the log"
    assert f"http://127.0.0.1:{receiver.port}/hooks/" not in text.replace("/hooks/***", "")


async def test_a_stdout_nobody_reads_any_more_neither_stops_the_daemon_nor_its_exit(
    setup: Setup, notify: Notifications, receiver: Receiver
) -> None:
    # `gex-alertd run | something` whose reader exits, or journald gone: every write to stdout
    # fails (EPIPE). The log's write raised into every caller that logged: the simulator
    # answered 500 to each poll and SIGTERM's own log line kept the daemon from stopping
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    loop = asyncio.get_running_loop()
    loop.add_reader(read_end, lambda: os.read(read_end, 1 << 16))  # read until READY
    d = await setup.start(notify, stdout=write_end)
    os.close(write_end)
    try:
        await notify.wait_for("READY=1")
        await eventually(lambda: len(receiver.ids) >= 1, "an alert delivered")
        loop.remove_reader(read_end)
        os.close(read_end)  # the reader goes away
        delivered = len(receiver.ids)
        await eventually(lambda: len(receiver.ids) >= delivered + 3, "alerts delivered after")
        code, health = await d.health()  # polls and deliveries go on; the lost log is told
        assert [p for p in health["problems"] if "log output refused" in p], health
        code = await d.signal_and_wait(signal.SIGTERM)
        assert code == 0, d.output()[-3000:]
    finally:
        if d.proc.returncode is None:
            d.proc.kill()
            await d.proc.wait()


async def test_sighup_refuses_a_broken_config_and_applies_a_good_one(
    setup: Setup, daemon: Daemon, notify: Notifications
) -> None:
    await notify.wait_for("READY=1")
    await daemon.wait_log(lambda e: e.get("event") == "alert_fired")

    # a config with two problems: the old config must keep running
    setup.config.write_text(
        setup.config_text(direction="sideways").replace("cooldown: 0s", "cooldown: soon", 1)
    )
    mark = len(notify.messages)
    daemon.proc.send_signal(signal.SIGHUP)
    reloading = await notify.wait_for("RELOADING=1", after=mark)
    assert any(f.startswith("MONOTONIC_USEC=") for f in notify.messages[reloading])
    await notify.wait_for("READY=1", after=reloading)
    refused = await daemon.wait_log(lambda e: "reload refused" in str(e.get("event")))
    problems = " ".join(refused["problems"])
    assert "rules[1].direction" in problems and "rules[0].cooldown" in problems, refused
    assert daemon.proc.returncode is None

    base = await daemon.metrics()
    assert counter(base, "gexalertd_config_reloads_total", outcome="refused") == 1
    async with asyncio.timeout(WAIT_S):  # still polling and firing on the old config
        while True:
            now = await daemon.metrics()
            if counter(now, "gexalertd_alerts_fired_total", rule="spy-level") > counter(
                base, "gexalertd_alerts_fired_total", rule="spy-level"
            ):
                break
            await asyncio.sleep(0.1)
    code, health = await daemon.health()
    assert code == 200 and set(health["symbols"]) == {"SPY"}

    # a valid change (one more symbol) is applied in place, without a restart
    setup.config.write_text(setup.config_text(symbols="[SPY, QQQ]"))
    mark = len(notify.messages)
    daemon.proc.send_signal(signal.SIGHUP)
    reloading = await notify.wait_for("RELOADING=1", after=mark)
    await notify.wait_for("READY=1", after=reloading)
    await daemon.wait_log(lambda e: e.get("event") == "config reloaded")

    async def watching_both() -> bool:
        return set((await daemon.health())[1]["symbols"]) == {"SPY", "QQQ"}

    await eventually(watching_both, "health to list SPY and QQQ")
    after = await daemon.metrics()
    assert counter(after, "gexalertd_config_reloads_total", outcome="applied") == 1
    # state was kept: the counters of this process went on from where they were
    assert counter(after, "gexalertd_alerts_fired_total", rule="spy-level") >= counter(
        now, "gexalertd_alerts_fired_total", rule="spy-level"
    )
    assert await daemon.signal_and_wait(signal.SIGTERM) == 0


async def test_sighup_during_start_up_neither_ends_the_daemon_nor_is_lost(
    setup: Setup, notify: Notifications
) -> None:
    # until the loop's handler was in (~0.5 s of imports), SIGHUP's default action ended the
    # process, and systemd counts a death by SIGHUP as a clean exit: no restart. Sent at once
    # after the spawn (held pending by the blocked mask until the daemon's first line takes it)
    # and again and again until READY, it must be recorded and the reload run after the start
    d = await setup.start(notify, hup_blocked=True)
    try:
        setup.config.write_text(setup.config_text(symbols="[SPY, QQQ]"))  # read by that reload
        d.proc.send_signal(signal.SIGHUP)
        ready = asyncio.create_task(notify.wait_for("READY=1"))
        while not ready.done():
            assert d.proc.returncode is None, d.output()[-3000:]
            d.proc.send_signal(signal.SIGHUP)
            await asyncio.sleep(0.1)
        await ready
        await d.wait_log(lambda e: e.get("event") == "config reloaded")

        async def watching_both() -> bool:
            return set((await d.health())[1]["symbols"]) == {"SPY", "QQQ"}

        await eventually(watching_both, "health to list SPY and QQQ")
        assert d.proc.returncode is None
        assert await d.signal_and_wait(signal.SIGTERM) == 0, d.output()[-3000:]
        assert "Traceback" not in d.output()
    finally:
        if d.proc.returncode is None:
            d.proc.kill()
            await d.proc.wait()


async def test_sigterm_during_a_reload_stops_once_and_exits_0(
    setup: Setup,
    daemon: Daemon,
    notify: Notifications,
    receiver: Receiver,
    redis: aioredis.Redis,
) -> None:
    # `systemctl reload` then `stop`: the reload (restarting a changed channel) and the stop
    # both stopped that channel's worker, and the second found it gone (KeyError): exit
    # status 1 and the rest of the stop skipped, or a channel restarted behind the stop
    await notify.wait_for("READY=1")
    receiver.release.clear()  # a delivery in flight: a stop of the channel waits for it
    await daemon.wait_log(lambda e: e.get("event") == "alert_fired")
    text = setup.config_text().replace(
        "secret: ${WEBHOOK_SECRET}", "secret: ${WEBHOOK_SECRET}\n    timeout_s: 9"
    )
    assert "timeout_s: 9" in text
    setup.config.write_text(text)  # the ops channel changed: the reload restarts it
    mark = len(notify.messages)
    daemon.proc.send_signal(signal.SIGHUP)
    await notify.wait_for("RELOADING=1", after=mark)
    daemon.proc.send_signal(signal.SIGTERM)
    await notify.wait_for("STOPPING=1", after=mark)

    async def left() -> bool:  # the stop's last step before the channels
        return await redis.zcard("gex:members") == 0

    await eventually(left, "the daemon to leave the membership")
    receiver.release.set()
    code = await asyncio.wait_for(daemon.proc.wait(), WAIT_S)
    out = daemon.output()
    assert code == 0, out[-3000:]
    for sign in ("Traceback", "never retrieved", "destroyed but it is pending"):
        assert sign not in out, out[-3000:]
    assert any(e.get("event") == "gex-alertd stopped" for e in daemon.events())


async def test_sigterm_while_waiting_for_redis_at_start_exits_0(
    tmp_path: Path, notify: Notifications, receiver: Receiver
) -> None:
    # `systemctl stop` while Redis is still down at boot: the wait re-raised Redis' own
    # ConnectionError, which the command did not catch (a traceback, exit status 1)
    setup = Setup(tmp_path, f"redis://127.0.0.1:{free_port()}/0", receiver)  # nothing there
    setup.config.write_text(setup.config_text())
    d = await setup.start(notify)
    try:
        await d.wait_log(lambda e: e.get("event") == "redis unreachable, retrying")
        code = await d.signal_and_wait(signal.SIGTERM)
        assert code == 0, d.output()[-3000:]
        assert "Traceback" not in d.output()
    finally:
        if d.proc.returncode is None:
            d.proc.kill()
            await d.proc.wait()


async def test_a_stop_before_the_start_is_done_says_the_early_reload_was_not_applied(
    tmp_path: Path, notify: Notifications, receiver: Receiver
) -> None:
    # the reload a SIGHUP asked for waits for the start; a stop first cancels it: say so
    setup = Setup(tmp_path, f"redis://127.0.0.1:{free_port()}/0", receiver)  # nothing there
    setup.config.write_text(setup.config_text())
    d = await setup.start(notify, hup_blocked=True)
    try:
        d.proc.send_signal(signal.SIGHUP)
        await d.wait_log(lambda e: e.get("event") == "redis unreachable, retrying")
        code = await d.signal_and_wait(signal.SIGTERM)
        assert code == 0, d.output()[-3000:]
        events = [e.get("event") for e in d.events()]
        assert "reload requested during start-up: runs once the start is done" in events
        assert "reload not applied: the daemon stopped before its start was done" in events
    finally:
        if d.proc.returncode is None:
            d.proc.kill()
            await d.proc.wait()


async def test_sighup_rereads_rule_files(
    setup: Setup, notify: Notifications, redis: aioredis.Redis
) -> None:
    rules_d = setup.tmp / "rules.d"
    rules_d.mkdir()  # an empty folder: the glob matches nothing, which is fine
    setup.config.write_text(setup.config_text() + 'rule_files: ["rules.d/*.yaml"]\n')
    daemon = await setup.start(notify)
    try:
        await notify.wait_for("READY=1")
        await daemon.wait_log(lambda e: e.get("event") == "alert_fired")

        # a broken rule file is refused, named with the path inside it; the old rules keep going
        extra = rules_d / "extra.yaml"
        extra.write_text(
            "- {name: spy-level-b, type: threshold, field: underlying_price, above: 600,\n"
            "   symbols: [SPY], cooldown: 0s, channels: [ops], direction: sideways}\n"
        )
        daemon.proc.send_signal(signal.SIGHUP)
        refused = await daemon.wait_log(lambda e: "reload refused" in str(e.get("event")))
        assert "rules.d/extra.yaml[0].direction: unknown key" in " ".join(refused["problems"])

        # the fixed file is applied in place, and its rule fires on the data that follows
        extra.write_text(extra.read_text().replace(", direction: sideways", ""))
        daemon.proc.send_signal(signal.SIGHUP)
        applied = await daemon.wait_log(lambda e: e.get("event") == "config reloaded")
        assert applied["rules"] == 3

        async def new_rule_fired() -> bool:
            return (
                counter(await daemon.metrics(), "gexalertd_alerts_fired_total", rule="spy-level-b")
                > 0
            )

        await eventually(new_rule_fired, "spy-level-b to fire")
        assert await daemon.signal_and_wait(signal.SIGTERM) == 0
    finally:
        if daemon.proc.returncode is None:
            daemon.proc.kill()
            await daemon.proc.wait()


def test_a_sighup_once_the_loop_is_closed_does_not_end_the_process() -> None:
    # closing the loop gives SIGHUP back its default action: one sent while `run` exits (its
    # stop done, a `systemctl reload` racing it) ended the process by signal instead of its
    # exit status, which systemd counts as clean (an exit 1 was not restarted)
    import subprocess

    code = (
        "import asyncio, os, signal\n"
        "from gex_alertd.commands import _run_loop\n"
        "async def serve():\n"
        "    asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, lambda: None)\n"
        "_run_loop(serve(), False)\n"
        "os.kill(os.getpid(), signal.SIGHUP)\n"
        "raise SystemExit(3)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], timeout=120, check=False)
    assert done.returncode == 3
