"""The outcome duty on a real Redis: computed once when the horizons have elapsed, equal to the
report's, follow-ups exactly once, only by the owner of the symbol."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis

from gex_alertd import config as config_mod
from gex_alertd import keys
from gex_alertd.config import Config, RedisConfig
from gex_alertd.connections import connect_config, entries
from gex_alertd.model import outbox_fields
from gex_alertd.ops.calendar_load import NyseCalendar
from gex_alertd.outcomes import records
from gex_alertd.outcomes.alerts import Filter, live_alerts
from gex_alertd.outcomes.horizons import parse_horizons
from gex_alertd.outcomes.live import OutcomeDuty, follow_up_id
from gex_alertd.outcomes.paths import read_path
from gex_alertd.outcomes.report import compute_report
from tests.outcomes.streams import alert, fire, store_path
from tests.outcomes.test_measure import MIN, MONDAY, et
from tests.support.nyse import nyse_sessions, nyse_table
from tests.support.redis_cluster import RedisCluster

T0 = et(*MONDAY, 10, 0)
CFG = config_mod.parse(
    {
        "redis": {"url": "redis://unused"},
        "watch": {"symbols": ["SPY", "QQQ"]},
        "channels": {"tty": {"type": "console"}},
        "rules": [
            {
                "name": "flip",
                "type": "flip_cross",
                "symbols": ["SPY"],
                "channels": ["tty"],
                "follow_up": ["5m"],
            },
        ],
        "outcomes": {"horizons": ["5m", "30m", "close"], "settle": "1d", "max_gap": "10m"},
    }
)

# the tests' fixed window and day, not today's: the table stays fresh whatever the date
CALENDAR = NyseCalendar(table=nyse_table(), clock=lambda: datetime(*MONDAY, 12, tzinfo=UTC))


def flip_config(symbols: list[str], **outcomes: Any) -> Config:
    """`symbols` watched, one flip_cross rule to a console channel, `outcomes` as given."""
    return config_mod.parse(
        {
            "watch": {"symbols": symbols},
            "channels": {"tty": {"type": "console"}},
            "rules": [{"name": "flip", "type": "flip_cross", "channels": ["tty"]}],
            "outcomes": outcomes,
        }
    )


def clock_at(ms: int) -> Callable[[], datetime]:
    return lambda: datetime.fromtimestamp(ms / 1000, UTC)


async def outbox(redis: aioredis.Redis) -> list[dict]:
    """Every event in every outbox."""
    out = []
    async for name in redis.scan_iter(match=keys.OUTBOX_PATTERN, _type="stream"):
        out += [json.loads(f[b"event"]) for _i, f in entries(await redis.xrange(name))]
    return out


async def test_outcome_once_when_elapsed_equal_to_the_report_and_one_follow_up(
    redis: aioredis.Redis,
) -> None:
    spots = [100.0 + 0.1 * (i % 7) - 0.05 * (i % 3) for i in range(11)]
    await store_path(redis, "SPY", [T0 + i * MIN for i in range(11)], spots)  # to 10:10
    ev = alert(T0 + 2 * MIN, details={"direction": "up", "flip": 99.5})
    await fire(redis, ev, ["tty"])
    duty = OutcomeDuty(
        redis, lambda: CFG, lambda key: True, clock=clock_at(T0 + 11 * MIN), calendar=CALENDAR
    )
    await duty.run_once()
    # 5m (to 10:07) is in the stream: the follow-up goes out; 30m and close are not yet
    assert await redis.hlen(records.outcomes_key("SPY")) == 0
    sent = [e for e in await outbox(redis) if e["type"] == "outcome"]
    assert [e["id"] for e in sent] == [follow_up_id(ev.id, "5m")]
    change = (spots[7] / spots[2] - 1) * 100
    assert sent[0]["summary"].startswith(f"SPY flip cross up 5 min later: {change:+.2f}%, max +")
    assert sent[0]["details"]["alert_id"] == ev.id
    await duty.run_once()
    assert len([e for e in await outbox(redis) if e["type"] == "outcome"]) == 1
    # a report made now leaves out the windows still running: figures that would move later
    # are no figures; the 5m one has ended and is the follow-up's
    now = compute_report(
        [ev], {("SPY", None): await read_path(redis, "SPY")}, parse_horizons("5m,30m,close"),
        sessions=nyse_sessions(), now_ms=T0 + 11 * MIN,
    )[0]  # fmt: skip
    outs = now.alerts[0].outcomes
    assert {h: o.status for h, o in outs.items()} == {"5m": "ok", "30m": "open", "close": "open"}
    assert outs["5m"].move_pct == sent[0]["details"]["outcome"]["move_pct"]
    by_horizon = {r.horizon: r for r in now.rows}
    assert by_horizon["30m"].alerts.n == 0 and by_horizon["30m"].open == 1
    assert by_horizon["5m"].alerts.n == 1 and by_horizon["5m"].open == 0

    # the day goes on to the close and one snapshot after it: every horizon has elapsed
    later = [T0 + i * MIN for i in range(11, 361)]
    await store_path(redis, "SPY", later, [100.0 + 0.01 * (i % 13) for i in range(len(later))])
    await duty.run_once()
    raw = await redis.hget(records.outcomes_key("SPY"), ev.id)
    assert isinstance(raw, bytes) and duty.stored == 1 and not duty.pending
    rec = records.decode(raw)
    assert rec.alert == ev and set(rec.outcomes) == {"5m", "30m", "close"}
    assert rec.outcomes["close"].end_ms == et(*MONDAY, 16, 0)
    assert rec.outcomes["30m"].level == 99.5 and rec.outcomes["30m"].held is True

    # the report, computed later from the whole stream, gives the same outcomes
    path = await read_path(redis, "SPY")
    report, _ = compute_report(
        [ev], {("SPY", None): path}, parse_horizons("5m,30m,close"), sessions=nyse_sessions()
    )
    assert report.alerts[0].outcomes == rec.outcomes
    # the follow-up's figures are the stored 5m outcome's
    assert sent[0]["details"]["outcome"]["move_pct"] == rec.outcomes["5m"].move_pct

    # a second daemon (fresh memory) and a restart change nothing and send nothing again
    other = OutcomeDuty(
        redis, lambda: CFG, lambda key: True, clock=clock_at(T0 + 400 * MIN), calendar=CALENDAR
    )
    await other.run_once()
    assert other.stored == 0 and other.followed_up == 0
    assert await redis.hget(records.outcomes_key("SPY"), ev.id) == raw
    assert len([e for e in await outbox(redis) if e["type"] == "outcome"]) == 1

    # the outbox is trimmed after delivery: the report still finds the alert in its record
    await redis.delete(keys.outbox("SPY"))
    found = await live_alerts(redis, ["SPY"], Filter(), lambda w, m: None)
    assert [e.id for e in found] == [ev.id]


async def test_only_the_owner_computes(redis: aioredis.Redis) -> None:
    await store_path(redis, "QQQ", [T0 + i * MIN for i in range(40)], [200.0] * 40)
    ev = alert(T0, symbol="QQQ", rule="flip")
    await fire(redis, ev, ["tty"])
    clock = clock_at(T0 + 40 * MIN)
    owned: set[str] = set()
    duty = OutcomeDuty(redis, lambda: CFG, lambda key: key in owned, clock=clock, calendar=CALENDAR)
    await duty.run_once()
    assert duty.followed_up == 0 and await redis.hlen(records.outcomes_key("QQQ")) == 0
    owned.add("QQQ")  # ownership moved to us: the next run does it
    await duty.run_once()
    assert duty.followed_up == 1


async def test_a_horizon_the_stream_never_reaches_settles_by_the_wall_clock(
    redis: aioredis.Redis,
) -> None:
    # halted from 10:05: nothing stored after it
    await store_path(redis, "SPY", [T0 + i * MIN for i in range(6)], [100.0] * 6)
    ev = alert(T0 + MIN)
    await fire(redis, ev, ["tty"])
    now = [T0 + 7 * MIN]
    duty = OutcomeDuty(
        redis, lambda: CFG, lambda key: True, clock=lambda: clock_at(now[0])(), calendar=CALENDAR
    )
    await duty.run_once()
    assert duty.followed_up == 0  # 10:06 is not in the stream yet, and not a day past
    now[0] = T0 + MIN + 5 * MIN + 86_400_000  # a day (settle) after the 5m end
    await duty.run_once()
    assert duty.followed_up == 1
    sent = [e for e in await outbox(redis) if e["type"] == "outcome"]
    assert sent[0]["details"]["outcome"]["status"] == "ok"
    assert "+0.00%" in sent[0]["summary"]


async def test_redis_down_is_one_warning_not_an_exception() -> None:
    from tests.support.redis_server import free_port

    dead = aioredis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_timeout=2)
    try:
        duty = OutcomeDuty(
            dead, lambda: CFG, lambda key: True, clock=clock_at(T0), calendar=CALENDAR
        )
        await duty.run_once()  # nothing listens there: logged, not raised
        assert duty.pending == {} and duty.stored == 0
    finally:
        await dead.aclose()


async def test_stored_outcomes_on_the_live_page_markers(redis: aioredis.Redis) -> None:
    from gex_alertd.web.history import read_alerts

    await store_path(
        redis, "SPY", [T0 + i * MIN for i in range(40)], [100.0 + i / 10 for i in range(40)]
    )
    first, second = alert(T0), alert(T0 + 38 * MIN)
    await fire(redis, first, ["tty"])
    await fire(redis, second, ["tty"])
    cfg = config_mod.parse({"watch": {"symbols": ["SPY"]}, "outcomes": {"horizons": ["5m", "30m"]}})
    duty = OutcomeDuty(
        redis, lambda: cfg, lambda key: True, clock=clock_at(T0 + 40 * MIN), calendar=CALENDAR
    )
    await duty.run_once()
    items = {i["id"]: i for i in await read_alerts(redis, "SPY", None, None, None)}
    # spot rose 0.1 a minute from 100: +0.50% after 5 minutes, +3.00% after 30
    assert items[first.id]["outcome"] == "5m +0.50%, 30m +3.00%"
    assert "outcome" not in items[second.id]  # its horizons are not over


async def test_two_daemons_split_the_symbols_by_ownership(redis: aioredis.Redis) -> None:
    from gex_alertd.ownership import owner

    members = ["host-a:1", "host-b:2"]
    symbols = ["SPY", "QQQ", "IWM", "DIA", "XLE", "XLF"]
    cfg = config_mod.parse(
        {
            "watch": {"symbols": symbols},
            "channels": {"tty": {"type": "console"}},
            "rules": [
                {"name": "flip", "type": "flip_cross", "channels": ["tty"], "follow_up": ["5m"]}
            ],
            "outcomes": {"horizons": ["5m"]},
        }
    )
    for sym in symbols:
        await store_path(redis, sym, [T0 + i * MIN for i in range(8)], [100.0] * 8, strikes=3)
        await fire(redis, alert(T0, symbol=sym), ["tty"])

    def owns(me: str) -> Callable[[str], bool]:
        return lambda key: owner(key, members) == me

    clock = clock_at(T0 + 8 * MIN)
    duties = [
        OutcomeDuty(redis, lambda: cfg, owns(me), clock=clock, calendar=CALENDAR) for me in members
    ]
    for _ in range(2):  # twice each, interleaved: nothing is done twice
        for duty in duties:
            await duty.run_once()
    mine = [duty.stored for duty in duties]
    assert sum(mine) == len(symbols) and all(mine)  # both had a share, together all of them
    assert [duty.followed_up for duty in duties] == mine
    sent = [e for e in await outbox(redis) if e["type"] == "outcome"]
    assert sorted(e["symbol"] for e in sent) == sorted(symbols)


async def test_a_halted_duty_stops_at_the_next_symbol_and_a_new_one_measures_the_rest(
    redis: aioredis.Redis,
) -> None:
    symbols = ["SPY", "QQQ", "IWM", "DIA"]
    cfg = flip_config(symbols, horizons=["5m"])
    for sym in symbols:
        await store_path(redis, sym, [T0 + i * MIN for i in range(8)], [100.0] * 8, strikes=3)
        await fire(redis, alert(T0, symbol=sym), ["tty"])
    at = clock_at(T0 + 8 * MIN)
    calls = 0

    def halting_clock() -> datetime:
        # the first call starts the run, the second stamps its first stored outcome: the
        # daemon stops right then
        nonlocal calls
        calls += 1
        if calls == 2:
            duty.halt()
        return at()

    duty = OutcomeDuty(redis, lambda: cfg, lambda _k: True, clock=halting_clock, calendar=CALENDAR)
    await duty.run_once()
    assert duty.stored == 1  # the symbol it was at, then no other
    await duty.run_once()
    assert duty.stored == 1 and calls == 2  # halted for good: a later run does nothing
    # the next process finds the rest in the outboxes and stores each once
    again = OutcomeDuty(redis, lambda: cfg, lambda _k: True, clock=at, calendar=CALENDAR)
    await again.run_once()
    assert again.stored == len(symbols) - 1
    stored = [await redis.hlen(records.outcomes_key(sym)) for sym in symbols]
    assert stored == [1] * len(symbols)


async def test_each_owned_symbols_outbox_is_read_on_a_cluster(
    redis_cluster: RedisCluster,
) -> None:
    client = connect_config(RedisConfig(cluster=redis_cluster.startup_nodes))
    symbols = ("OCA", "OCB")  # this test's own: the cluster is shared by the session
    cfg = config_mod.parse(
        {
            "redis": {"url": "redis://unused"},
            "watch": {"symbols": list(symbols)},
            "channels": {"tty": {"type": "console"}},
            "rules": [{"name": "flip", "type": "flip_cross", "channels": ["tty"]}],
        }
    )
    try:
        for sym in symbols:
            await client.delete(keys.outbox(sym), keys.snap(sym), records.outcomes_key(sym))
        a, b = alert(T0, symbol="OCA"), alert(T0, symbol="OCB")
        await client.xadd(keys.outbox("OCA"), outbox_fields(a, ["tty"]))
        await client.xadd(keys.outbox("OCB"), outbox_fields(b, ["tty"]))
        owned = {"OCA"}
        clock = clock_at(T0 + MIN)
        duty = OutcomeDuty(
            client, lambda: cfg, lambda key: key in owned, clock=clock, calendar=CALENDAR
        )
        await duty.run_once()
        assert set(duty.pending) == {a.id}  # only the owned symbol's outbox was read
        owned.add("OCB")  # ownership moved to us: its outbox is read from the lookback on
        await duty.run_once()
        assert set(duty.pending) == {a.id, b.id}
        found = await live_alerts(client, symbols, Filter(), lambda w, m: None)
        assert sorted(e.id for e in found) == sorted([a.id, b.id])
    finally:
        for sym in symbols:  # the session's cluster is shared: leave nothing behind
            await client.delete(keys.outbox(sym), keys.snap(sym), records.outcomes_key(sym))
        await client.aclose()


async def test_outboxes_are_read_a_bounded_number_per_round_trip_and_each_to_its_end(
    redis: aioredis.Redis, monkeypatch
) -> None:
    from gex_alertd.outcomes import live

    # 2 outboxes per round trip, 1 entry per page: 5 symbols, one with 3 alerts, all found
    monkeypatch.setattr(live, "OUTBOXES_PER_TRIP", 2)
    monkeypatch.setattr(live, "PAGE", 1)
    symbols = ["SPY", "QQQ", "IWM", "DIA", "XLE"]
    cfg = flip_config(symbols, horizons=["5m"])
    for sym in symbols:
        await store_path(redis, sym, [T0 + i * MIN for i in range(8)], [100.0] * 8, strikes=3)
        for n in range(3 if sym == "IWM" else 1):
            await fire(redis, alert(T0 + n * MIN, symbol=sym), ["tty"])
    duty = OutcomeDuty(
        redis, lambda: cfg, lambda key: True, clock=clock_at(T0 + 8 * MIN), calendar=CALENDAR
    )
    await duty.run_once()
    assert duty.stored == len(symbols) + 2


async def test_on_one_node_the_outboxes_are_read_by_xread_only_those_with_alerts_answering(
    redis: aioredis.Redis, monkeypatch
) -> None:
    from gex_alertd.outcomes import live

    # one XREAD per 2 outboxes (it answers only for those with new entries), never one XRANGE
    # per outbox; paged to each outbox's end as before
    monkeypatch.setattr(live, "OUTBOXES_PER_TRIP", 2)
    monkeypatch.setattr(live, "PAGE", 1)
    symbols = ["SPY", "QQQ", "IWM", "DIA", "XLE"]
    cfg = flip_config(symbols, horizons=["30m"])
    fired = [alert(T0 + n * MIN, symbol="IWM") for n in range(3)] + [alert(T0, symbol="DIA")]
    for a in fired:
        await fire(redis, a, ["tty"])
    duty = OutcomeDuty(
        redis, lambda: cfg, lambda key: True, clock=clock_at(T0 + 5 * MIN), calendar=CALENDAR
    )
    await redis.config_resetstat()
    await duty.run_once()  # nothing has elapsed yet: the alerts wait, nothing else is read
    assert sorted(duty.pending) == sorted(a.id for a in fired)
    stats = await redis.info("commandstats")
    assert "cmdstat_xrange" not in stats
    assert 3 <= stats["cmdstat_xread"]["calls"] <= 6  # 5 outboxes by 2, then IWM and DIA paged
    await fire(redis, alert(T0 + 4 * MIN, symbol="SPY"), ["tty"])
    await duty.run_once()  # from where it left off: only the new one
    assert len(duty.pending) == len(fired) + 1


async def test_on_one_node_the_lookback_starts_where_the_per_outbox_read_starts_it(
    redis: aioredis.Redis,
) -> None:
    # XREAD reads after an id; the lookback's first id is floor-0, as XRANGE's min: an entry
    # 1 ms before it (floor-1, any sequence) is outside, as on a cluster (a cursor left there
    # would otherwise read its last alerts a second time)
    cfg = flip_config(["SPY"], horizons=["30m"], lookback="1h")
    now = T0 + 5 * MIN
    floor = now - 60 * MIN
    before, at = alert(floor - 1, symbol="SPY"), alert(floor, symbol="SPY")
    out = keys.outbox("SPY")
    await redis.xadd(out, outbox_fields(before, ["tty"]), id=f"{floor - 1}-7")
    await redis.xadd(out, outbox_fields(at, ["tty"]), id=f"{floor}-0")
    duty = OutcomeDuty(redis, lambda: cfg, lambda key: True, clock=clock_at(now), calendar=CALENDAR)
    await duty._collect(cfg, now)
    assert sorted(duty.pending) == [at.id]


async def test_on_one_node_each_runs_checks_go_a_bounded_number_of_streams_per_round_trip(
    redis: aioredis.Redis, monkeypatch, exchanges: list[int]
) -> None:
    from gex_alertd.outcomes import live

    # every symbol with pending alerts is asked for its records and its last id, 2 symbols
    # per round trip (not 2 round trips per symbol); a fresh Redis (SCRIPT FLUSH: NOSCRIPT)
    # loads the script and asks again; what is due is measured as before
    monkeypatch.setattr(live, "OUTBOXES_PER_TRIP", 2)
    symbols = ["SPY", "QQQ", "IWM", "DIA", "XLE"]
    cfg = flip_config(symbols, horizons=["5m"])
    for sym in symbols:
        await store_path(redis, sym, [T0 + i * MIN for i in range(8)], [100.0] * 8, strikes=3)
        await fire(redis, alert(T0, symbol=sym), ["tty"])
        await fire(redis, alert(T0 + 5 * MIN, symbol=sym), ["tty"])  # its 5m is not reached
    exchanges.clear()
    duty = OutcomeDuty(
        redis, lambda: cfg, lambda key: True, clock=clock_at(T0 + 8 * MIN), calendar=CALENDAR
    )
    await redis.script_flush()
    await redis.config_resetstat()
    await duty.run_once()
    assert duty.stored == len(symbols)  # the first alert of each: 5m reached (7 min stored)
    assert len(duty.pending) == len(symbols)  # the second waits
    stats = await redis.info("commandstats")
    assert "cmdstat_hmget" in stats and "cmdstat_evalsha" in stats
    assert exchanges == [4, 4, 4, 2]  # 2 commands a symbol, 2, 2 and 1 symbols; the first twice
    exchanges.clear()
    await duty.run_once()  # nothing due: 3 round trips for the 5 symbols, nothing else
    assert exchanges == [4, 4, 2]
    assert duty.stored == len(symbols) and len(duty.pending) == len(symbols)


async def test_a_run_asks_nothing_of_streams_whose_alerts_cannot_be_due_yet(
    redis: aioredis.Redis, exchanges: list[int]
) -> None:
    # horizons ending later than now + source.max_future_s (+ slack): no stream id can reach
    # them yet, so the run asks those streams nothing; once they come near, the streams are
    # asked again, and what has elapsed is measured as before
    symbols = ["SPY", "QQQ", "IWM"]
    cfg = flip_config(symbols, horizons=["1h"])
    assert cfg.source.max_future_s == 300
    for sym in symbols:
        await store_path(redis, sym, [T0 + i * MIN for i in range(8)], [100.0] * 8, strikes=3)
        await fire(redis, alert(T0, symbol=sym), ["tty"])  # 1h ends at 11:00
    at = [T0 + 1 * MIN]
    duty = OutcomeDuty(
        redis, lambda: cfg, lambda key: True, clock=lambda: clock_at(at[0])(), calendar=CALENDAR
    )
    await duty.run_once()  # reads the outboxes, then asks no stream anything
    assert len(duty.pending) == len(symbols)
    exchanges.clear()
    await redis.config_resetstat()
    await duty.run_once()
    assert exchanges == [] and duty.stored == 0
    assert "cmdstat_hmget" not in await redis.info("commandstats")
    at[0] = T0 + 55 * MIN  # 11:00 is within max_future_s + slack (6 min): asked, not yet due
    await duty.run_once()
    # one round trip for the 3 streams (sent again once: the last-id script loads at first use)
    assert set(exchanges) == {2 * len(symbols)} and duty.stored == 0
    await store_path(redis, "SPY", [T0 + i * MIN for i in range(8, 62)], [101.0] * 54, strikes=3)
    at[0] = T0 + 62 * MIN  # SPY's stream passed 11:00: measured; the others wait for settle
    await duty.run_once()
    assert duty.stored == 1 and await redis.hlen(records.outcomes_key("SPY")) == 1
    assert len(duty.pending) == len(symbols) - 1
