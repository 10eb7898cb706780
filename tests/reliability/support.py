"""Parts for the reliability suite: the real daemon process, a simulator process that outlives
it, an idempotent Standard Webhooks receiver, and the alerts the stored data implies.

Expected alerts are never hard-coded: after a run, `gex-alertd replay` over the stored streams
computes the alerts the data implies (the same engine and ids as the live path, from empty
state, exactly as the daemon started), and the receiver must hold exactly those.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from gex_alertd import connections, keys
from tests.support.daemon_log import json_events
from tests.support.outbox import all_entries
from tests.support.redis_server import free_port
from tests.support.wait import WAIT_S, eventually

GEX_ALERTD = str(Path(sys.executable).with_name("gex-alertd"))
API_KEY = "fa-reliability-" + "k" * 16
SECRET = "whsec_" + "cmVsaWFiaWxpdHktdGVzdC1zZWNyZXQtMzI="  # base64 of 24+ bytes
SOAK = os.environ.get("GEX_SOAK") == "1"


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "CREDENTIALS_DIRECTORY")
    }
    env.update(extra)
    return env


# --- the webhook receiver ------------------------------------------------------------------


@dataclass
class Delivery:
    webhook_id: str
    alert_id: str
    symbol: str
    as_of: str
    rule: str


@dataclass
class Receiver:
    """A webhook endpoint as Standard Webhooks asks receivers to be: verify the signature, and
    process each `webhook-id` once (a redelivery after a crash is acknowledged, not processed
    again). `accepted` is what the receiving application saw; `redeliveries` counts repeats."""

    port: int = field(default_factory=free_port)
    accepted: list[Delivery] = field(default_factory=list)
    redeliveries: Counter[str] = field(default_factory=Counter)
    bad_signatures: int = 0
    _runner: web.AppRunner | None = None
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            Webhook(SECRET).verify(body, dict(request.headers))
        except WebhookVerificationError:
            self.bad_signatures += 1
            return web.Response(status=400)
        wid = request.headers["webhook-id"]
        if wid in self.ids():
            self.redeliveries[wid] += 1
            return web.Response(status=204)
        event = json.loads(body)
        self.accepted.append(
            Delivery(wid, event["id"], event["symbol"], event["as_of"], event["rule"])
        )
        async with self._changed:
            self._changed.notify_all()
        return web.Response(status=204)

    def ids(self) -> set[str]:
        return {d.webhook_id for d in self.accepted}

    async def wait_for(self, ids: set[str], timeout_s: float = WAIT_S) -> None:
        async with asyncio.timeout(timeout_s), self._changed:
            await self._changed.wait_for(lambda: ids <= self.ids())

    async def wait_more(self, count: int, timeout_s: float = WAIT_S) -> None:
        """Until `count` more alerts than now are accepted."""
        await self.wait_until_accepted(len(self.accepted) + count, timeout_s)

    async def wait_until_accepted(self, total: int, timeout_s: float = WAIT_S) -> None:
        """Until at least `total` alerts are accepted in all."""
        async with asyncio.timeout(timeout_s), self._changed:
            await self._changed.wait_for(lambda: len(self.accepted) >= total)


# --- processes -----------------------------------------------------------------------------


class Proc:
    def __init__(self, proc: asyncio.subprocess.Process, log: Path) -> None:
        self.proc = proc
        self.log = log

    @property
    def alive(self) -> bool:
        return self.proc.returncode is None

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def events(self) -> list[dict[str, Any]]:
        return json_events(self.log)

    async def wait_log(self, text: str, timeout_s: float = WAIT_S) -> None:
        def logged() -> bool:
            if text in self.output():
                return True
            assert self.alive, f"exited with {self.proc.returncode}:\n{self.output()[-3000:]}"
            return False

        await eventually(logged, f"{text!r} in {self.log.name}", timeout_s)

    def kill(self) -> None:
        if self.alive:
            self.proc.send_signal(signal.SIGKILL)

    async def stop(self, sig: int = signal.SIGTERM, timeout_s: float = WAIT_S) -> int:
        if self.alive:
            self.proc.send_signal(sig)
        return await asyncio.wait_for(self.proc.wait(), timeout_s)


async def spawn(args: list[str], log: Path, cwd: Path, env: dict[str, str] | None = None) -> Proc:
    with log.open("ab") as out:
        proc = await asyncio.create_subprocess_exec(
            *args, stdout=out, stderr=asyncio.subprocess.STDOUT, cwd=cwd, env=env or clean_env()
        )
    return Proc(proc, log)


def crossing_scenario(symbols: dict[str, float], every_s: float, count: int) -> str:
    """Spot jumps 1% above and below its opening level every `every_s` simulated seconds, for
    each symbol (offset so symbols do not move on the same tick): threshold rules fire on
    every crossing that a poll sees, flip rules now and then."""
    lines = ["tick_s: 1", "symbols:"]
    for sym, spot in symbols.items():
        lines.append(f"  {sym}: {{spot: {spot}, annual_vol: 0.01, strikes: 40}}")
    lines.append("events:")
    for i in range(count):
        for j, (sym, spot) in enumerate(symbols.items()):
            at = 2 + i * every_s + j * 0.5
            to = round(spot * (1.01 if i % 2 == 0 else 0.99), 2)
            lines.append(f"  - {{at: {at:g}s, do: spot, symbol: {sym}, to: {to}}}")
    return "\n".join(lines) + "\n"


async def start_simulator(
    tmp: Path, scenario: str, symbols: list[str], speed: float = 10.0
) -> tuple[Proc, str]:
    """`gex-alertd simulate` in its own process, so it keeps its clock while daemons come and go."""
    (tmp / "scenario.yaml").write_text(scenario)
    port = free_port()
    proc = await spawn(
        [GEX_ALERTD, "simulate", "--port", str(port), "--scenario", "scenario.yaml",
         "--speed", str(speed), "--cache-s", "0", "--api-key", API_KEY,
         "--symbols", ",".join(symbols)],
        tmp / "simulator.log", tmp,
    )  # fmt: skip
    await proc.wait_log("Flow GEX simulator on")
    return proc, f"http://127.0.0.1:{port}"


def daemon_config(
    base_url: str,
    redis: str,
    receiver: Receiver,
    symbols: list[str],
    levels: dict[str, float],
    *,
    interval_s: float = 0.1,
    timeout_s: float = 2.0,
    extra_channel: str = "",
) -> str:
    rules = []
    for sym, level in levels.items():
        rules.append(
            f"  - {{name: {sym.lower()}-level, type: threshold, field: underlying_price, "
            f"above: {level}, below: {level}, symbols: [{sym}], cooldown: 0s, "
            f"severity: warning, channels: [hook]}}"
        )
    rules.append(
        "  - {name: flips, type: flip_cross, symbols: '*', direction: any, band_pct: 0, "
        "cooldown: 0s, severity: info, channels: [hook]}"
    )
    rules.append(
        "  - {name: sign, type: net_gex_sign, symbols: '*', direction: any, cooldown: 0s, "
        "severity: critical, channels: [hook]}"
    )
    # a URL, or the `redis:` mapping as YAML (a cluster, a Sentinel set)
    redis_yaml = redis if redis.startswith("{") else f'{{url: "{redis}"}}'
    return f"""
source:
  kind: flowgex
  base_url: {base_url}
  api_key: {API_KEY}
  timeout_s: {timeout_s}
  requests_per_min: 100000
  backoff_base_s: 0.05
  backoff_max_s: 0.5
redis: {redis_yaml}
watch: {{interval_s: {interval_s}, jitter_s: 0, market_hours: always, symbols: {symbols}}}
channels:
  hook:
    type: webhook
    url: {receiver.url}
    secret: {SECRET}
    timeout_s: 2
    retry_base_s: 0.1
    retry_max_s: 0.5
    max_attempts: 100000
{extra_channel}
rules:
{chr(10).join(rules)}
outbox: {{drain_timeout: 10s, claim_idle: 2s}}
ops: {{listen: null, log_format: json, log_level: info}}
"""


async def start_daemon(
    tmp: Path, config: Path, log_name: str = "daemon.log", consumer: str = "reliability"
) -> Proc:
    # the same consumer name on every start, as a systemd restart of one host would have
    env = clean_env(GEX_ALERTD_CONSUMER=consumer)
    return await spawn(
        [GEX_ALERTD, "run", "--config", str(config), "--no-uvloop"], tmp / log_name, tmp, env
    )


# --- what the stored data implies ----------------------------------------------------------


async def replay_expected(tmp: Path, config: Path) -> list[dict[str, Any]]:
    """Alerts `gex-alertd replay` derives from the stored streams (nothing is sent)."""
    out = tmp / "replay.jsonl"
    out.unlink(missing_ok=True)
    proc = await asyncio.create_subprocess_exec(
        GEX_ALERTD, "replay", "--config", str(config), "--out", str(out), "--no-progress",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=tmp,
        env=clean_env(),
    )  # fmt: skip
    text, _ = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, text.decode(errors="replace")[-3000:]
    return [json.loads(line) for line in out.read_text().splitlines() if line.strip()]


async def finish(
    tmp: Path,
    config: Path,
    sim: Proc,
    daemons: Sequence[Proc],
    rx: Receiver,
    consumer: str = "reliability",
) -> list[str]:
    """Freeze the history (stop the upstream), stop each of `daemons` cleanly, and make sure
    every alert the history implies has been delivered; return the expected ids in order."""
    await sim.stop()
    for daemon in daemons:
        assert await daemon.stop() == 0, daemon.output()[-3000:]
    expected = [a["id"] for a in await replay_expected(tmp, config)]
    if not set(expected) <= rx.ids():
        # the drain timed out with deliveries left: they are pending in Redis, a new life sends
        # them (the upstream is gone, so it stores nothing new)
        again = await start_daemon(tmp, config, "daemon-drain.log", consumer)
        await rx.wait_for(set(expected))
        assert await again.stop() == 0
    return expected


async def stored_as_of(redis: aioredis.Redis) -> dict[str, list[int]]:
    """Per snapshot stream: the entry ms, in stream order."""
    out: dict[str, list[int]] = {}
    async for key in redis.scan_iter(match="gex:*:snap*"):
        entries = connections.entries(await redis.xrange(key))
        out[key.decode()] = [int(eid.split(b"-")[0]) for eid, _ in entries]
    return out


async def outbox_ids(redis: aioredis.Redis) -> list[str]:
    return [connections.as_str(f[b"id"]) for f in await all_entries(redis)]


async def assert_enqueued_once(redis: aioredis.Redis, expected: list[str]) -> None:
    """Every alert the history implies is in an outbox once, and nothing else."""
    enqueued = await outbox_ids(redis)
    assert [i for i, n in Counter(enqueued).items() if n > 1] == [], "alert enqueued twice"
    assert sorted(enqueued) == sorted(expected), "live alerts differ from replay of the data"


async def assert_stored_once(
    redis: aioredis.Redis, symbols: Iterable[str], expected: list[str]
) -> None:
    """Each symbol's snapshots stored once each and in order, and `assert_enqueued_once`."""
    streams = await stored_as_of(redis)
    assert set(streams) == {keys.snap(s) for s in symbols}, set(streams)
    for key, ms in streams.items():
        assert ms == sorted(set(ms)), f"{key}: a snapshot stored twice or out of order"
    await assert_enqueued_once(redis, expected)


def no_tracebacks(tmp: Path) -> None:
    for log in tmp.glob("daemon*.log"):
        text = log.read_text(errors="replace")
        assert "Traceback" not in text, f"{log.name}:\n{text[-3000:]}"
