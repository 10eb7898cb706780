"""`gex-alertd notify-test` and `gex-alertd outbox`, run as real processes."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
import yaml
from aiohttp import web

from gex_alertd import keys
from gex_alertd.config import RedisConfig
from gex_alertd.connections import connect_config, entries
from gex_alertd.notify.outbox import list_dead
from tests.notify.support import SECRET, Receiver, alert, enqueue
from tests.support.redis_cluster import RedisCluster


async def cli(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gex_alertd", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode()


def write_config(tmp_path: Path, redis_url: str, channels: dict[str, Any]) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"redis": {"url": redis_url}, "channels": channels}))
    return str(path)


async def test_notify_test_sends_a_signed_sample(tmp_path: Path, redis_url: str) -> None:
    rx = await Receiver(secret=SECRET).start()
    cfg = write_config(
        tmp_path, redis_url, {"ops": {"type": "webhook", "url": rx.url, "secret": SECRET}}
    )
    try:
        rc, out = await cli("notify-test", "--channel", "ops", "-c", cfg)
        assert rc == 0, out
        assert "ops: delivered" in out
        assert rx.hits[0].verified and rx.hits[0].headers["webhook-id"].startswith("test-ops-")
        rc, out = await cli("notify-test", "--channel", "nope", "-c", cfg)
        assert rc == 1 and "unknown channel 'nope' (channels: ops)" in out
    finally:
        await rx.stop()


async def test_notify_test_reports_failure_without_the_secret(
    tmp_path: Path, redis_url: str
) -> None:
    async def forbidden(_n: int, _r: web.Request) -> web.Response:
        return web.Response(status=403, text="invalid_token")

    rx = await Receiver(responder=forbidden, path="/services/T1/B2/sekr1tT0kenValue").start()
    cfg = write_config(tmp_path, redis_url, {"desk": {"type": "slack", "webhook_url": rx.url}})
    try:
        rc, out = await cli("notify-test", "--channel", "desk", "-c", cfg)
        assert rc == 1
        assert "desk: permanent failure: HTTP 403: invalid_token" in out
        assert "sekr1tT0kenValue" not in out
    finally:
        await rx.stop()


async def test_outbox_lists_pending_and_dead_and_retries(
    tmp_path: Path, redis: aioredis.Redis, redis_url: str
) -> None:
    cfg = write_config(
        tmp_path, redis_url, {"ops": {"type": "webhook", "url": "http://127.0.0.1:9/x"}}
    )
    await enqueue(redis, alert(1), ["ops"])
    await redis.xreadgroup(keys.notify_group("ops"), "host:main", {keys.outbox("SPY"): ">"})
    await enqueue(redis, alert(2), ["ops"])
    await redis.xadd(
        keys.DEAD,
        {"id": alert(3).id, "channel": "ops", "symbol": "SPY", "reason": "HTTP 410: gone",
         "attempts": "1", "entry": "1-0", "failed_at": "2026-11-24T15:00:00.000Z",
         "event": b'{"id":"x"}'},
    )  # fmt: skip
    rc, out = await cli("outbox", "-c", cfg)
    assert rc == 0, out
    assert "ops: 2 unacknowledged" in out
    assert alert(1).id in out and "consumer=host:main" in out
    assert "DEAD (1)" in out and "reason: HTTP 410: gone" in out

    rc, out = await cli("outbox", "-c", cfg, "retry")
    assert rc == 1 and "--all" in out
    (dead,) = await list_dead(redis)
    rc, out = await cli("outbox", "-c", cfg, "retry", dead.dead_id)
    assert rc == 0, out
    assert "1 dead letter(s) requeued" in out
    assert await redis.xlen(keys.DEAD) == 0
    last = entries(await redis.xrevrange(keys.outbox("SPY"), count=1))[0][1]
    assert last[b"id"] == alert(3).id.encode() and last[b"channels"] == b'["ops"]'


async def test_outbox_lists_and_retries_on_a_redis_cluster(
    tmp_path: Path, redis_cluster: RedisCluster
) -> None:
    """`outbox list` finds every symbol's outbox on every primary; `outbox retry` puts a dead
    letter back on its symbol's outbox, whichever node holds it."""
    path = tmp_path / "config.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "redis": {"cluster": redis_cluster.startup_nodes},
                "watch": {"symbols": ["SPY"]},
                "channels": {"ops": {"type": "webhook", "url": "http://127.0.0.1:9/x"}},
            }
        )
    )
    cfg = str(path)
    client = connect_config(RedisConfig(cluster=redis_cluster.startup_nodes))
    syms = [f"C{i}" for i in range(12)]  # unwatched: found by SCAN on each primary
    try:
        await client.delete(keys.DEAD, *(keys.outbox(s) for s in ["SPY", *syms]))
        for s in ["SPY", *syms]:
            await enqueue(client, alert(1, s), ["ops"])
        await client.xadd(
            keys.DEAD,
            {"id": alert(3, "C5").id, "channel": "ops", "symbol": "C5", "reason": "HTTP 410",
             "attempts": "1", "entry": "1-0", "failed_at": "2026-11-24T15:00:00.000Z",
             "event": b'{"id":"x"}'},
        )  # fmt: skip
        rc, out = await cli("outbox", "-c", cfg)
        assert rc == 0, out
        assert f"ops: {1 + len(syms)} unacknowledged" in out
        assert "DEAD (1)" in out
        rc, out = await cli("outbox", "-c", cfg, "retry", "--all")
        assert rc == 0, out
        assert await client.xlen(keys.DEAD) == 0
        last = entries(await client.xrevrange(keys.outbox("C5"), count=1))[0][1]
        assert last[b"id"] == alert(3, "C5").id.encode()
    finally:  # the session's cluster is shared: leave nothing another test's dispatcher reads
        await client.delete(keys.DEAD, *(keys.outbox(s) for s in ["SPY", *syms]))
        await client.aclose()


async def test_check_probe_asks_each_channel_where_it_connects(
    tmp_path: Path, redis_url: str
) -> None:
    """`check --probe` uses each notifier's declared `probe_target` (no guessing at url or
    webhook_url attributes): HTTP channels their URL's host, email its SMTP host, console none."""
    from tests.support.redis_server import free_port

    rx = await Receiver().start()
    closed = free_port()
    cfg = write_config(
        tmp_path,
        redis_url,
        {
            "ops": {"type": "webhook", "url": rx.url},
            "chat": {"type": "discord", "webhook_url": f"http://127.0.0.1:{closed}/api/webhooks/1/t"},
            "mail": {"type": "email", "host": "127.0.0.1", "port": closed, "from": "a@b.example",
                     "to": ["c@d.example"], "starttls": False},
            "tty": {"type": "console"},
        },
    )  # fmt: skip
    try:
        rc, out = await cli("check", "--probe", "-c", cfg)
    finally:
        await rx.stop()
    assert rc == 1, out
    assert f"channel ops: ok (connected to 127.0.0.1:{rx.port})" in out
    assert "channel tty: ok (ConsoleChannel)" in out
    assert f"FAIL channel chat: cannot connect to 127.0.0.1:{closed}" in out
    assert f"FAIL channel mail: cannot connect to 127.0.0.1:{closed}" in out


async def test_outbox_list_never_prints_a_receivers_control_characters(
    tmp_path: Path, redis: aioredis.Redis, redis_url: str
) -> None:
    # a dead letter's reason quotes the receiver's answer (notify.base.classify_http): an OSC
    # 52 sequence in an error page wrote the clipboard of the operator running `outbox list`
    # (tail, check and the console were made safe: quoted.printable)
    cfg = write_config(
        tmp_path, redis_url, {"ops": {"type": "webhook", "url": "http://127.0.0.1:9/x"}}
    )
    await redis.xadd(
        keys.DEAD,
        {"id": alert(3).id, "channel": "ops", "symbol": "SPY",
         "reason": "HTTP 400: \x1b]52;c;cHduZWQ=\x07 bad request", "attempts": "1",
         "entry": "1-0", "failed_at": "2026-11-24T15:00:00.000Z", "event": b'{"id":"x"}'},
    )  # fmt: skip
    rc, out = await cli("outbox", "-c", cfg)
    assert rc == 0, out
    assert "\x1b" not in out and "\x07" not in out, repr(out)
    assert "reason: HTTP 400: ?]52;c;cHduZWQ=? bad request" in out


async def test_notify_test_never_prints_a_receivers_control_characters(
    tmp_path: Path, redis_url: str
) -> None:
    async def hostile(_n: int, _r: web.Request) -> web.Response:
        return web.Response(status=400, text="\x1b]52;c;cHduZWQ=\x07 no")

    rx = await Receiver(responder=hostile).start()
    cfg = write_config(tmp_path, redis_url, {"ops": {"type": "webhook", "url": rx.url}})
    try:
        rc, out = await cli("notify-test", "--channel", "ops", "-c", cfg)
        assert rc == 1
        assert "\x1b" not in out and "\x07" not in out, repr(out)
        assert "ops: permanent failure: HTTP 400: ?]52;c;cHduZWQ=? no" in out
    finally:
        await rx.stop()
