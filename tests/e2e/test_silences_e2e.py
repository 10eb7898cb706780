"""Silences end to end: the daemon (`gex-alertd run` on the simulator), a real redis-server and
a real webhook receiver; the silence is added and expired with the CLI as an operator would.
While it holds, the silenced rule's alerts are not delivered and `outbox list` lists them as
silenced; the other rule's alerts still flow; after expiry the silenced rule's alerts flow
again."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import redis.asyncio as aioredis

from gex_alertd import keys
from gex_alertd.model import decode_alert
from gex_alertd.notify import silences as sil
from gex_alertd.notify.silences import SilenceStore
from tests.ops import test_signals as signals
from tests.ops.test_signals import GEX_ALERTD, Notifications, Receiver, Setup
from tests.support.outbox import all_entries
from tests.support.wait import WAIT_S, eventually

# the webhook receiver and the sd_notify socket, as the signal tests set them up
receiver = signals.receiver
notify = signals.notify


async def rule_of(redis: aioredis.Redis) -> dict[str, str]:
    """Alert id -> rule name, from the outbox stream (ids are opaque hashes)."""
    out = {}
    for fields in await all_entries(redis):
        event = decode_alert(fields[b"event"])
        out[event.id] = event.rule
    return out


async def _cli(redis_url: str, config: Path, *args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        GEX_ALERTD, "silence", "-c", str(config), "--redis", redis_url, *args,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), WAIT_S)
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def test_a_silenced_rule_is_held_back_then_flows_again(
    tmp_path: Path, redis: aioredis.Redis, redis_url: str, receiver: Receiver,
    notify: Notifications,
) -> None:  # fmt: skip
    setup = Setup(tmp_path, redis_url, receiver)
    setup.config.write_text(setup.config_text())
    sid = (
        await _cli(redis_url, setup.config, "add", "--rule", "spy-level", "--symbol", "SPY",
                   "--for", "1h", "--comment", "desk maintenance")
    ).strip()  # fmt: skip
    daemon = await setup.start(notify)
    try:
        await notify.wait_for("READY=1")

        async def silenced_records() -> list[sil.SilencedAlert]:
            return [r for r in await sil.list_silenced(redis, 1000) if r.channel == "ops"]

        async def several_silenced() -> bool:
            return len(await silenced_records()) >= 3

        await eventually(several_silenced, "three spy-level alerts silenced on channel ops")
        held = {r.alert_id for r in await silenced_records()}
        assert all(r.silence == sid for r in await silenced_records())
        rules = await rule_of(redis)
        assert {rules[a] for a in held} == {"spy-level"}
        # not delivered: the receiver never saw a silenced alert, nor any spy-level one
        assert not held & set(receiver.ids)
        assert "spy-level" not in {rules.get(i) for i in receiver.ids}

        proc = await asyncio.create_subprocess_exec(
            GEX_ALERTD, "outbox", "-c", str(setup.config), "--redis", redis_url, "list",
            "--limit", "100000", stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env={**os.environ, "CREDENTIALS_DIRECTORY": str(setup.creds)},
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), WAIT_S)
        assert proc.returncode == 0, err.decode()
        listing = out.decode()
        assert "SILENCED" in listing and f"silence={sid}" in listing
        assert all(alert_id in listing for alert_id in held)

        # expired: the rule's alerts are delivered again
        await _cli(redis_url, setup.config, "expire", sid)

        async def spy_level_delivered() -> bool:
            rules = await rule_of(redis)
            return "spy-level" in {rules.get(i) for i in receiver.ids}

        await eventually(spy_level_delivered, "a spy-level alert delivered after the expiry")
        assert await redis.exists(keys.SILENCES)
    finally:
        if daemon.proc.returncode is None:
            daemon.proc.kill()
            await daemon.proc.wait()


async def test_a_silence_ends_by_itself_and_alerts_flow_again(
    tmp_path: Path, redis: aioredis.Redis, redis_url: str, receiver: Receiver,
    notify: Notifications,
) -> None:  # fmt: skip
    """No expire command: the silence's end (by the Redis server's clock) is all it takes for
    the rule's alerts to be delivered again (were ends ignored, none ever would be)."""
    setup = Setup(tmp_path, redis_url, receiver)
    setup.config.write_text(setup.config_text())
    sid = (await _cli(redis_url, setup.config, "add", "--rule", "spy-level", "--for", "3s")).strip()
    daemon = await setup.start(notify)
    try:
        await notify.wait_for("READY=1")

        async def delivered_spy_level() -> bool:
            rules = await rule_of(redis)
            return "spy-level" in {rules.get(i) for i in receiver.ids}

        await eventually(delivered_spy_level, "spy-level alerts delivered once the silence ended")
        status = SilenceStore(redis)
        (silence,) = await status.all()
        assert silence.id == sid and silence.status(await status.server_now()) == "expired"
        # whatever it held while it lasted (how much depends on how fast the daemon started;
        # holding itself is proven above) was never delivered
        held = {r.alert_id for r in await sil.list_silenced(redis, 1000) if r.silence == sid}
        assert not held & set(receiver.ids)
    finally:
        if daemon.proc.returncode is None:
            daemon.proc.kill()
            await daemon.proc.wait()
