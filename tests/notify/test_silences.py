"""Silences: pure matching at given instants, the Redis store (server clock, expiry, pruning),
the `gex-alertd silence` commands, and the dispatcher holding silenced alerts back (recorded,
listed by `outbox list`) against a real redis-server and a real webhook receiver."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest
import redis.asyncio as aioredis
from click.testing import CliRunner

from gex_alertd import keys
from gex_alertd.cli import main
from gex_alertd.config import RedisConfig
from gex_alertd.connections import connect_config
from gex_alertd.model import AlertEvent, encode_alert
from gex_alertd.notify import silences as sil
from gex_alertd.notify.dispatch import Dispatcher
from gex_alertd.notify.silences import Matchers, Silence, SilenceStore, is_silenced
from tests.notify.support import Receiver, alert, enqueue, make_config
from tests.support.redis_cluster import RedisCluster
from tests.support.wait import eventually

T0 = datetime(2026, 5, 15, 14, 0, tzinfo=UTC)


def _event(**kw: str) -> AlertEvent:
    base = dict(
        id="a1", rule="spy-flip", type="flip_cross", symbol="SPY", expiry=None,
        severity="warning", as_of="2026-05-15T14:00:00.000Z",
        fired_at="2026-05-15T14:00:00.000Z", summary="s",
    )  # fmt: skip
    base.update(kw)
    return AlertEvent(**base)  # type: ignore[arg-type] # the keys are AlertEvent's


def _silence(minutes: float = 60, start: datetime = T0, **matchers: str) -> Silence:
    return Silence(
        id="s1",
        matchers=Matchers(**matchers),  # type: ignore[arg-type] # test keys are matcher names
        starts_at=start,
        ends_at=start + timedelta(minutes=minutes),
    )


# --- pure matching ----------------------------------------------------------------------


def test_every_set_matcher_must_equal() -> None:
    s = _silence(rule="spy-flip", symbol="SPY")
    assert is_silenced([s], _event(), "desk", T0) is s
    assert is_silenced([s], _event(symbol="QQQ"), "desk", T0) is None
    assert is_silenced([s], _event(rule="other"), "desk", T0) is None


def test_channel_severity_and_type_matchers() -> None:
    ch = _silence(channel="desk")
    assert is_silenced([ch], _event(), "desk", T0) is ch
    assert is_silenced([ch], _event(), "ops", T0) is None
    sev = _silence(severity="info")
    assert is_silenced([sev], _event(), "desk", T0) is None
    assert is_silenced([sev], _event(severity="info"), "desk", T0) is sev
    typ = _silence(type="oi_change")
    assert is_silenced([typ], _event(), "desk", T0) is None


def test_only_between_start_and_end() -> None:
    s = _silence(minutes=60, rule="spy-flip")
    assert is_silenced([s], _event(), "d", T0 - timedelta(seconds=1)) is None  # pending
    assert is_silenced([s], _event(), "d", T0) is s
    assert is_silenced([s], _event(), "d", T0 + timedelta(minutes=59)) is s
    assert is_silenced([s], _event(), "d", T0 + timedelta(minutes=60)) is None  # ended
    assert s.status(T0 - timedelta(seconds=1)) == "pending"
    assert s.status(T0) == "active"
    assert s.status(T0 + timedelta(minutes=60)) == "expired"


def test_a_silence_without_matchers_is_refused() -> None:
    assert Matchers().problems()
    assert not Matchers(rule="x").problems()
    assert Matchers(rule="x" * 201).problems()


def test_unknown_matcher_and_bad_severity_do_not_decode() -> None:
    good = sil.encode(_silence(rule="r"))
    assert sil.decode(good).matchers.rule == "r"
    bad = json.loads(good)
    bad["matchers"] = {"colour": "red"}
    with pytest.raises(msgspec.ValidationError):
        sil.decode(json.dumps(bad))
    bad["matchers"] = {"severity": "loud"}
    with pytest.raises(msgspec.ValidationError):
        sil.decode(json.dumps(bad))


# --- the store on Redis -----------------------------------------------------------------


async def test_add_uses_the_server_clock_and_is_shared(redis: aioredis.Redis) -> None:
    store = SilenceStore(redis)
    s = await store.add(Matchers(rule="spy-flip", symbol="spy"), 3600, comment="maintenance")
    sec, usec = await redis.time()
    server_now = datetime.fromtimestamp(sec + usec / 1e6, UTC)
    assert abs((s.starts_at - server_now).total_seconds()) < 60
    assert s.ends_at - s.starts_at == timedelta(hours=1)
    assert s.matchers.symbol == "SPY"  # upper-cased like the watchlist
    other = SilenceStore(redis)  # another daemon on the same Redis
    assert [x.id for x in await other.all()] == [s.id]
    assert await other.check(_event(), "desk") == s
    assert await other.check(_event(symbol="QQQ"), "desk") is None


async def test_a_daemons_cached_silences_follow_every_write_at_once(
    redis: aioredis.Redis,
) -> None:
    """The delivery check caches the silences; a write by anyone (CLI, API, another daemon)
    moves the version, so the next check sees it without waiting for the cache to age."""
    # a cache that never ages here, so what it serves depends on the version alone
    daemon, operator = SilenceStore(redis, cache_max_age_s=1e9), SilenceStore(redis)
    assert await daemon.check(_event(), "desk") is None  # cached: no silences
    s = await operator.add(Matchers(rule="spy-flip"), 3600)
    assert await daemon.check(_event(), "desk") == s
    await operator.expire(s.id)
    assert await daemon.check(_event(), "desk") is None
    # a hand-written entry does not move the version: the cache serves on (in the daemon,
    # until it ages out), which shows the check did not re-read the hash
    hand = _silence(rule="spy-flip", start=await daemon.server_now())
    await redis.hset(sil.KEY, hand.id, sil.encode(hand))
    assert await daemon.check(_event(), "desk") is None
    assert await SilenceStore(redis).check(_event(), "desk") == hand  # a fresh reader sees it


async def test_expire_ends_it_at_once_and_keeps_it_listed(redis: aioredis.Redis) -> None:
    store = SilenceStore(redis)
    s = await store.add(Matchers(rule="spy-flip"), 3600)
    ended = await store.expire(s.id)
    assert ended.ends_at <= await store.server_now()
    assert await store.check(_event(), "desk") is None
    assert [x.id for x in await store.all()] == [s.id]
    assert (await store.active())[0] == []
    assert await store.expire(s.id) == ended  # again: nothing changes
    with pytest.raises(sil.SilenceError, match="no silence with id"):
        await store.expire("nope")


async def test_expiring_a_pending_silence(redis: aioredis.Redis) -> None:
    store = SilenceStore(redis)
    later = await store.server_now() + timedelta(hours=1)
    s = await store.add(Matchers(rule="r"), 60, starts_at=later)
    assert s.status(store.now()) == "pending"
    ended = await store.expire(s.id)
    assert ended.status(store.now()) == "expired"


async def test_a_silence_ends_by_itself(redis: aioredis.Redis) -> None:
    """Waited for on the server's clock (the condition, not a duration); no client action. It
    never stops matching early: when it no longer matches, the server's clock is past its end
    (that it matches before its end: the pure tests and every 1 h silence here)."""
    store = SilenceStore(redis)
    s = await store.add(Matchers(rule="spy-flip"), 1.0)

    async def ended() -> bool:
        return await store.check(_event(), "desk") is None

    await eventually(ended, "the 1 s silence to end by the server clock")
    assert await store.server_now() >= s.ends_at
    assert [x.id for x in await store.all()] == [s.id]  # ended, still listed


async def test_prune_uses_server_time_not_the_stored_creation(redis: aioredis.Redis) -> None:
    store = SilenceStore(redis)
    now = await store.server_now()
    old = await store.add(Matchers(rule="r"), 60, starts_at=now - timedelta(days=10))
    recent = await store.add(Matchers(rule="r"), 60, starts_at=now - timedelta(days=1))
    live = await store.add(Matchers(rule="r"), 3600)
    # add() prunes: the one that ended 10 days ago is gone, the expired-yesterday one stays
    ids = {s.id for s in await store.all()}
    assert old.id not in ids
    assert {recent.id, live.id} <= ids
    assert await store.prune() == []


async def test_unreadable_entries_are_skipped(redis: aioredis.Redis) -> None:
    store = SilenceStore(redis)
    await redis.hset(sil.KEY, "junk", b"{not json")
    # deeper than the parser goes: its RecursionError failed every delivery's silence check
    await redis.hset(sil.KEY, "deep", b'{"x": ' + b"[" * 5_000 + b"]" * 5_000 + b"}")
    s = await store.add(Matchers(rule="spy-flip"), 60)
    assert [x.id for x in await store.all()] == [s.id]


async def test_bad_requests_name_the_cause(redis: aioredis.Redis) -> None:
    store = SilenceStore(redis)
    with pytest.raises(sil.SilenceError, match="at least one matcher"):
        await store.add(Matchers(), 60)
    with pytest.raises(sil.SilenceError, match="duration"):
        await store.add(Matchers(rule="r"), 0)
    with pytest.raises(sil.SilenceError, match="comment"):
        await store.add(Matchers(rule="r"), 60, comment="x" * 5000)
    assert await redis.hlen(sil.KEY) == 0


# --- the command line -------------------------------------------------------------------


def _config(tmp_path: Path, redis_url: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(f"redis: {{url: '{redis_url}'}}\nchannels: {{tty: {{type: console}}}}\n")
    return path


def _cli(*args: str) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_cli_add_list_expire(tmp_path: Path, redis_url: str) -> None:
    import redis as sync_redis

    sync_redis.Redis.from_url(redis_url).delete(sil.KEY)
    cfg = str(_config(tmp_path, redis_url))
    sid = _cli(
        "silence", "-c", cfg, "add", "--rule", "spy-flip", "--symbol", "SPY",
        "--for", "1h", "--comment", "desk maintenance", "--created-by", "ops",
    ).strip()  # fmt: skip
    assert len(sid) == 36  # a UUID, printed alone so scripts can capture it
    listed = _cli("silence", "-c", cfg, "list")
    assert sid in listed and "active" in listed and "desk maintenance" in listed
    assert "rule=spy-flip symbol=SPY" in listed
    rows = json.loads(_cli("silence", "-c", cfg, "list", "--json"))
    assert rows[0]["id"] == sid and rows[0]["status"] == "active"
    assert rows[0]["matchers"] == {"rule": "spy-flip", "symbol": "SPY"}
    assert f"{sid} expired at" in _cli("silence", "-c", cfg, "expire", sid)
    assert sid not in _cli("silence", "-c", cfg, "list")
    assert "expired" in _cli("silence", "-c", cfg, "list", "--all")


async def test_cli_list_never_prints_control_characters_of_a_silence(
    tmp_path: Path, redis: aioredis.Redis, redis_url: str
) -> None:
    # a silence's comment, author and matcher values come through the token-protected API
    # from any client holding the token: an OSC 52 sequence in them wrote the clipboard of
    # the operator running `silence list` (tail, outbox list, check: quoted.printable)
    await redis.delete(sil.KEY)
    store = SilenceStore(redis)
    osc = "\x1b]52;c;cHduZWQ=\x07"
    await store.add(Matchers(rule=f"r{osc}"), 3600, comment=f"hi{osc}", created_by=f"bot{osc}")
    # the command runs its own loop: off this one
    listed = await asyncio.to_thread(
        _cli, "silence", "-c", str(_config(tmp_path, redis_url)), "list"
    )
    assert "\x1b" not in listed and "\x07" not in listed, repr(listed)
    assert "by bot?]52;c;cHduZWQ=?: hi?]52;c;cHduZWQ=?" in listed
    assert "rule=r?]52;c;cHduZWQ=?" in listed


def test_cli_errors_are_one_line(tmp_path: Path, redis_url: str) -> None:
    cfg = str(_config(tmp_path, redis_url))
    runner = CliRunner()
    res = runner.invoke(main, ["silence", "-c", cfg, "add", "--for", "1h"])
    assert res.exit_code == 1 and "at least one matcher" in res.output
    res = runner.invoke(main, ["silence", "-c", cfg, "add", "--rule", "r", "--for", "soon"])
    assert res.exit_code != 0 and "expected a duration" in res.output
    res = runner.invoke(main, ["silence", "-c", cfg, "expire", "nope"])
    assert res.exit_code == 1 and "no silence with id 'nope'" in res.output
    assert "Traceback" not in res.output
    res = runner.invoke(main, ["silence", "-c", cfg, "--redis", "redis://127.0.0.1:1/0", "list"])
    assert res.exit_code == 1 and "redis:" in res.output


# --- at delivery: the dispatcher's silence check ----------------------------------------


async def test_dispatcher_records_silenced_alerts_and_sends_the_rest(
    redis: aioredis.Redis, redis_url: str
) -> None:
    rx = await Receiver().start()
    store = SilenceStore(redis)
    cfg = make_config({"ops": {"type": "webhook", "url": rx.url}}, redis_url)
    d = Dispatcher(redis, cfg, consumer="t1", silences=store)
    await d.start()
    try:
        s = await store.add(Matchers(rule="spy-flip", symbol="SPY"), 3600, comment="test")
        spy, qqq = alert(1), alert(2, symbol="QQQ")
        await enqueue(redis, spy, ["ops"], poke=[d])
        await enqueue(redis, qqq, ["ops"], poke=[d])
        await rx.wait_for(1)
        assert rx.ids() == [qqq.id]
        # one outbox per symbol: SPY's may be dealt with after QQQ's went out

        async def recorded() -> bool:
            return len(await sil.list_silenced(redis)) == 1

        await eventually(recorded, "the silenced SPY alert recorded")
        (record,) = await sil.list_silenced(redis)
        assert (record.alert_id, record.channel, record.silence) == (spy.id, "ops", s.id)
        assert record.summary == spy.summary
        health = await d.health()
        assert health["ops"]["pending"] == 0  # acked: recorded, not lost and not left pending

        await store.expire(s.id)
        again = alert(3)
        await enqueue(redis, again, ["ops"], poke=[d])
        await rx.wait_for(2)
        assert rx.ids() == [qqq.id, again.id]
        assert len(await sil.list_silenced(redis)) == 1
    finally:
        await d.stop()
        await rx.stop()


def test_outbox_list_shows_silenced(tmp_path: Path, redis_url: str) -> None:
    import redis as sync_redis

    client = sync_redis.Redis.from_url(redis_url)
    client.delete(keys.SILENCED)
    silence = _silence(rule="spy-flip")
    event = _event()
    client.xadd(
        keys.SILENCED,
        sil.silenced_fields(event.id, "ops", "SPY", silence, "2026-05-15T14:00:00.000Z",
                            encode_alert(event)),
    )  # fmt: skip
    out = _cli("outbox", "-c", str(_config(tmp_path, redis_url)), "list")
    assert "SILENCED (1 most recent)" in out
    assert f"ops        {event.id}  silence={silence.id}" in out


async def test_silences_work_on_a_redis_cluster(redis_cluster: RedisCluster) -> None:
    """`gex:silences` and its version key sit in two slots, and redis-py refuses TIME in a
    cluster pipeline: add, list, check and expire must still work (the delivery check runs
    before every send)."""
    client = connect_config(RedisConfig(cluster=redis_cluster.startup_nodes))
    store = SilenceStore(client)
    try:
        await client.delete(keys.SILENCES, keys.SILENCES_VERSION)
        s = await store.add(Matchers(symbol="SPY"), 3600, comment="cluster")
        assert [x.id for x in await store.all()] == [s.id]
        held = await store.check_many([alert(1), alert(2, "QQQ")], "ops")
        assert [h.id if h else None for h in held] == [s.id, None]
        await store.expire(s.id)
        assert await store.check_many([alert(1)], "ops") == [None]  # the version moved
    finally:
        await client.delete(keys.SILENCES, keys.SILENCES_VERSION)
        await client.aclose()
