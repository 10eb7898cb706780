"""`gex-alertd migrate` on a real Redis: what the legacy single outbox still owes (pending,
unread, not marked sent, per channel) moves onto the per-symbol outboxes exactly once, even
run twice or cut short and run again; undecodable entries go to the dead letters; sent
markers are copied; the legacy stream is renamed with a TTL, never deleted."""

from __future__ import annotations

import asyncio
from pathlib import Path

import redis.asyncio as aioredis
from click.testing import CliRunner

from gex_alertd import keys
from gex_alertd.cli import main
from gex_alertd.config import RedisConfig
from gex_alertd.connections import as_str, connect_config, entries, read_entries
from gex_alertd.migrate import BACKUP_TTL_MS, migrate, plan
from gex_alertd.model import AlertEvent, decode_channels, outbox_fields
from tests.support.redis_cluster import RedisCluster

LEGACY = keys.LEGACY_ALERTS


def _alert(n: int, symbol: str) -> AlertEvent:
    as_of = f"2026-11-24T15:00:{n:02d}.000Z"
    return AlertEvent(
        id=f"a{n}", rule="r", type="heartbeat" if symbol == "*" else "flip_cross",
        symbol=symbol, expiry=None, severity="warning", as_of=as_of, fired_at=as_of,
        summary=f"{symbol} alert {n}",
    )  # fmt: skip


async def _add(redis: aioredis.Redis, n: int, symbol: str, channels: list[str]) -> str:
    return as_str(await redis.xadd(LEGACY, outbox_fields(_alert(n, symbol), channels)))


async def _read(redis: aioredis.Redis, channel: str, count: int) -> list[bytes]:
    got = await redis.xreadgroup(keys.notify_group(channel), "old", {LEGACY: ">"}, count=count)
    return [eid for eid, _f in read_entries(got)[0][1]]


async def legacy_layout(redis: aioredis.Redis) -> dict[str, str]:
    """The old layout mid-flight: ops and desk have groups (mail has none); entries acked,
    pending, pending but marked sent, unread, and one that does not decode."""
    for ch in ("ops", "desk"):
        await redis.xgroup_create(LEGACY, keys.notify_group(ch), id="0", mkstream=True)
    ids = {
        "acked": await _add(redis, 1, "SPY", ["ops", "desk"]),
        "ops_pending": await _add(redis, 2, "SPY", ["ops", "desk"]),  # desk acked it
        "marked": await _add(redis, 4, "QQQ", ["ops"]),  # pending, but the receiver had it
    }
    ops = await _read(redis, "ops", 3)
    await redis.xack(LEGACY, keys.notify_group("ops"), ops[0])
    desk = await _read(redis, "desk", 2)
    await redis.xack(LEGACY, keys.notify_group("desk"), *desk)
    await redis.set(keys.legacy_sent_marker("a4", "ops"), b"1", px=3_600_000)
    ids["unread"] = await _add(redis, 3, "QQQ", ["ops", "desk", "mail"])  # mail: no group
    ids["ops_outbox"] = await _add(redis, 5, "*", ["ops"])
    broken = {"id": "a6[/b]", "channels": b'["ops"]', "symbol": "SPY", "event": "{not json"}
    ids["broken"] = as_str(await redis.xadd(LEGACY, broken))  # type: ignore[arg-type]  # str/bytes fields
    ids["desk_unread"] = await _add(redis, 7, "SPY", ["desk"])
    return ids


async def moved(redis: aioredis.Redis) -> dict[str, list[tuple[str, list[str]]]]:
    """outbox -> [(alert id, channels)] of each per-symbol outbox."""
    out: dict[str, list[tuple[str, list[str]]]] = {}
    for sym in ("SPY", "QQQ", keys.OPS_SYMBOL):
        batch = entries(await redis.xrange(keys.outbox(sym)))
        out[sym] = [(f[b"id"].decode(), decode_channels(f[b"channels"])) for _e, f in batch]
    return out


EXPECTED = {
    "SPY": [("a2", ["ops"]), ("a7", ["desk"])],
    "QQQ": [("a3", ["ops", "desk"])],
    keys.OPS_SYMBOL: [("a5", ["ops"])],
}


async def test_what_is_owed_moves_once_and_the_legacy_stream_is_kept_renamed(
    redis: aioredis.Redis,
) -> None:
    ids = await legacy_layout(redis)
    summary = await migrate(redis)
    assert await moved(redis) == EXPECTED
    assert (summary.moved, summary.before, summary.dead, summary.markers) == (4, 0, 1, 1)
    # the groups were made before the entries: every moved entry is new to its channel
    for sym, items in EXPECTED.items():
        groups = {g["name"].decode(): g for g in await redis.xinfo_groups(keys.outbox(sym))}
        for ch in {c for _a, chs in items for c in chs}:
            g = groups[keys.notify_group(ch)]
            assert g["last-delivered-id"] == b"0-0" and g["pending"] == 0, (sym, ch)
    dead = entries(await redis.xrange(keys.DEAD))
    assert len(dead) == 1
    assert dead[0][1][b"entry"].decode() == ids["broken"] and dead[0][1][b"channel"] == b"ops"
    assert b"undecodable event" in dead[0][1][b"reason"]
    # the legacy marker is copied to the per-symbol name, its TTL kept
    assert 0 < await redis.pttl(keys.sent_marker("QQQ", "a4", "ops")) <= 3_600_000
    # renamed, with a TTL, never deleted
    assert not await redis.exists(LEGACY)
    assert await redis.xlen(keys.LEGACY_ALERTS_BACKUP) == 7
    assert 0 < await redis.pttl(keys.LEGACY_ALERTS_BACKUP) <= BACKUP_TTL_MS
    # a moved entry carries the legacy entry's event as it was
    legacy = {
        f[b"id"]: f[b"event"] for _e, f in entries(await redis.xrange(keys.LEGACY_ALERTS_BACKUP))
    }
    for _e, f in entries(await redis.xrange(keys.outbox("QQQ"))):
        assert f[b"event"] == legacy[f[b"id"]]
    again = await migrate(redis)
    assert again.retired == "absent" and again.moved == 0
    assert await moved(redis) == EXPECTED


async def test_a_run_cut_short_then_run_again_moves_nothing_twice(redis: aioredis.Redis) -> None:
    await legacy_layout(redis)
    first = await migrate(redis, limit=2)  # as if it crashed after two entries
    assert first.moved == 2 and await redis.exists(LEGACY)  # not retired: it is not done
    partial = await moved(redis)
    assert sum(len(v) for v in partial.values()) == 2
    second = await migrate(redis)
    assert (second.moved, second.before, second.dead) == (2, 2, 1)
    assert await moved(redis) == EXPECTED
    assert len(entries(await redis.xrange(keys.DEAD))) == 1
    assert not await redis.exists(LEGACY)


async def test_two_runs_at_once_move_each_entry_once(redis: aioredis.Redis) -> None:
    await legacy_layout(redis)  # two daemons upgraded together both migrate at start
    a, b = await asyncio.gather(migrate(redis), migrate(redis))
    assert a.moved + b.moved == 4 and await moved(redis) == EXPECTED


async def test_an_entry_added_meanwhile_keeps_the_legacy_stream(redis: aioredis.Redis) -> None:
    await legacy_layout(redis)
    p = await plan(redis)
    await _add(redis, 8, "SPY", ["ops"])  # an old daemon still writing during the upgrade
    from gex_alertd.migrate import _retire

    assert "added to it meanwhile" in await _retire(redis, p.newest)
    assert await redis.exists(LEGACY)
    await migrate(redis)  # the next run takes it too
    assert ("a8", ["ops"]) in (await moved(redis))["SPY"]
    assert not await redis.exists(LEGACY)


def _config(tmp_path: Path, url: str) -> Path:
    p = tmp_path / "config.yaml"
    p.write_text(f"redis: {{url: '{url}'}}\nwatch: {{symbols: [SPY]}}\n")
    return p


async def test_the_command(tmp_path: Path, redis: aioredis.Redis, redis_url: str) -> None:
    await legacy_layout(redis)
    cfg = str(_config(tmp_path, redis_url))
    before = {k: await redis.dump(k) for k in await redis.keys("*")}
    wide = CliRunner(env={"COLUMNS": "200"})  # the table unwrapped
    res = await asyncio.to_thread(wide.invoke, main, ["migrate", "-c", cfg, "--dry-run"])
    assert res.exit_code == 0, res.output
    assert "gex:{QQQ}:alerts" in res.output and "ops, desk" in res.output
    assert "to gex:dead" in res.output and "5 to move (6 deliveries owed)" in res.output
    assert "a6[/b]" in res.output  # stored text is shown as it is, never read as markup
    assert {k: await redis.dump(k) for k in await redis.keys("*")} == before  # wrote nothing
    res = await asyncio.to_thread(CliRunner().invoke, main, ["migrate", "-c", cfg])
    assert res.exit_code == 0, res.output
    assert "moved 4" in res.output and "dead 1" in res.output and "renamed to" in res.output
    assert await moved(redis) == EXPECTED
    res = await asyncio.to_thread(CliRunner().invoke, main, ["migrate", "-c", cfg])
    assert res.exit_code == 0 and "nothing to migrate" in res.output


def test_the_command_exit_status(tmp_path: Path) -> None:
    down = str(_config(tmp_path, "redis://127.0.0.1:1/0"))
    res = CliRunner().invoke(main, ["migrate", "-c", down])
    assert res.exit_code == 1 and "error: Redis at redis://127.0.0.1:1/0" in res.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("redis: {url: 12}\n")
    res = CliRunner().invoke(main, ["migrate", "-c", str(bad)])
    assert res.exit_code == 2


async def test_the_daemon_migrates_before_its_first_poll(
    redis: aioredis.Redis, redis_url: str
) -> None:
    from structlog.testing import capture_logs

    from gex_alertd import config as config_mod
    from gex_alertd.app import Daemon

    await legacy_layout(redis)
    tree = {"redis": {"url": redis_url}, "watch": {"symbols": ["SPY"]}}
    daemon = Daemon(config_mod.parse(tree, "test"))
    try:
        with capture_logs() as logs:
            await daemon._migrate_legacy_outbox()
            await daemon._migrate_legacy_outbox()  # nothing left: no second line
    finally:
        await daemon.redis.aclose()
    assert await moved(redis) == EXPECTED
    [line] = [e for e in logs if e["event"] == "legacy outbox migrated"]
    assert line["moved"] == 4 and line["dead"] == 1 and "renamed" in line["legacy_stream"]


async def _clear(client: aioredis.Redis) -> None:
    """Every key the migration tests touch (the session's cluster is shared: the operator
    outbox and its groups would reach another test's dispatcher)."""
    stale = [LEGACY, keys.LEGACY_ALERTS_BACKUP, keys.DEAD]
    stale += [keys.outbox(s) for s in ("SPY", "QQQ", keys.OPS_SYMBOL)]
    for pattern in ("gex:{*}:migrated:*", "gex:{*}:sent:*", "gex:sent:*"):
        stale += [k async for k in client.scan_iter(match=pattern)]
    for key in stale:
        await client.delete(key)


async def test_migrate_on_a_cluster(redis_cluster: RedisCluster) -> None:
    # the legacy stream, its backup and every target outbox in their own slots
    client = connect_config(RedisConfig(cluster=redis_cluster.startup_nodes))
    try:
        await _clear(client)
        await legacy_layout(client)
        first = await migrate(client, limit=3)
        second = await migrate(client)
        assert (first.moved, second.moved, second.before, second.dead) == (3, 1, 3, 1)
        assert await moved(client) == EXPECTED
        assert await client.xlen(keys.LEGACY_ALERTS_BACKUP) == 7
    finally:
        await _clear(client)
        await client.aclose()


async def test_each_owed_alert_is_delivered_once_per_channel(
    redis: aioredis.Redis, redis_url: str
) -> None:
    from gex_alertd import config as config_mod
    from gex_alertd.notify.dispatch import Dispatcher
    from tests.notify.support import Receiver
    from tests.support.wait import eventually

    ops, desk = await Receiver().start(), await Receiver().start()
    await legacy_layout(redis)
    tree = {
        "redis": {"url": redis_url},
        "watch": {"symbols": ["SPY", "QQQ"]},
        "channels": {
            "ops": {"type": "webhook", "url": ops.url},
            "desk": {"type": "webhook", "url": desk.url},
        },
    }
    cfg = config_mod.parse(tree, "test")
    d = Dispatcher(redis, cfg, consumer="t1")
    await d.start()
    try:
        await migrate(redis, limit=1)  # cut short, then run again (and once more: nothing)
        await migrate(redis)
        await migrate(redis)
        await ops.wait_for(3)
        await desk.wait_for(2)

        async def acked() -> bool:
            h = await d.health()
            return h["ops"]["pending"] == 0 and h["desk"]["pending"] == 0

        await eventually(acked, "ops and desk acked every moved entry")
        assert sorted(ops.ids()) == ["a2", "a3", "a5"]  # not a1 (acked), a4 (sent), a6 (dead)
        assert sorted(desk.ids()) == ["a3", "a7"]  # not a1, a2 (acked)
    finally:
        await d.stop()
        await ops.stop()
        await desk.stop()
