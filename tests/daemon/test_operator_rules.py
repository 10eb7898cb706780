"""The operator rules' edge against a real Redis: each transition committed exactly once, by
however many daemons observe it, across restarts; nothing written while nothing changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
import redis.asyncio as aioredis

from gex_alertd import keys
from gex_alertd.config import WatchTarget
from gex_alertd.model import FlowGex, decode_alert, decode_channels, decode_flow_gex, group_key
from gex_alertd.operator_rules import DEFAULT_RULE, OperatorRules, failure_kind, with_defaults
from gex_alertd.rules.source_failing import SourceFailing
from gex_alertd.rules.stale_data import StaleData
from gex_alertd.sources.errors import (
    AuthError,
    BadRequest,
    MalformedPayload,
    PlanError,
    RateLimited,
    TransientError,
    UnknownSymbol,
)
from tests.rules.operator_support import op_rule
from tests.support.outbox import all_entries
from tests.support.upstream import flow_gex_body

SPY = WatchTarget("SPY", None, 15.0, 0.0)
T0 = 1_764_000_000.0  # seconds


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> float:
        return self.t


def failing_rule(**kw: Any) -> SourceFailing:
    return op_rule(SourceFailing, type="source_failing", channels=["ops"], **{"for": "60s", **kw})


async def outbox(redis: aioredis.Redis) -> list[tuple[list[str], Any]]:
    out = []
    for fields in await all_entries(redis):
        out.append((decode_channels(fields[b"channels"]), decode_alert(fields[b"event"])))
    return out


def boom() -> TransientError:
    return TransientError("HTTP 503: upstream down", status=503)


async def test_fires_once_and_resolves_once_across_two_daemons(redis: aioredis.Redis) -> None:
    clock = Clock()
    a = OperatorRules(redis, [failing_rule()], clock=clock)
    b = OperatorRules(redis, [failing_rule()], clock=clock)  # another daemon, or a restart
    await a.observe(SPY, None, boom())  # the episode starts (state written)
    clock.t += 90
    await a.observe(SPY, None, boom())  # fires
    await b.observe(SPY, None, boom())  # reads the shared state: already notified
    await a.observe(SPY, None, boom())  # its own cache: nothing to write
    clock.t += 10
    await b.observe(SPY, _snap(), None)  # recovers: resolved
    await a.observe(SPY, _snap(), None)  # a's cache is stale: conflict, re-read, nothing more
    events = await outbox(redis)
    assert [e.status for _, e in events] == ["firing", "resolved"]
    up, down = (e for _, e in events)
    assert group_key(up) == group_key(down) == "r/SPY/"
    assert up.id != down.id and up.type == "source_failing" and up.severity == "critical"
    assert events[0][0] == ["ops"]
    assert a.enqueued + b.enqueued == 2


async def test_a_restart_mid_episode_continues_it(redis: aioredis.Redis) -> None:
    clock = Clock()
    first = OperatorRules(redis, [failing_rule()], clock=clock)
    await first.observe(SPY, None, boom())
    clock.t += 45
    again = OperatorRules(redis, [failing_rule()], clock=clock)  # restarted: empty cache
    await again.observe(SPY, None, boom())
    assert await outbox(redis) == []  # 45 s < for
    clock.t += 20
    await again.observe(SPY, None, boom())  # 65 s since the episode began before the restart
    ((_, event),) = await outbox(redis)
    assert event.details["failing_for_s"] == 65.0


async def test_nothing_is_written_while_nothing_changes(redis: aioredis.Redis) -> None:
    clock = Clock()
    ops = OperatorRules(redis, [failing_rule()], clock=clock)
    for _ in range(5):
        await ops.observe(SPY, _snap(), None)
        clock.t += 15
    assert await redis.exists(keys.operator_state("SPY")) == 0
    await ops.observe(SPY, None, RateLimited("slow down", retry_after=1.0, status=429))
    assert await redis.exists(keys.operator_state("SPY")) == 0  # a 429 is not a failure
    await ops.observe(SPY, None, boom())
    assert await redis.hget(keys.operator_state("SPY"), "r") is not None


async def test_an_id_is_enqueued_once_even_if_the_state_were_lost(redis: aioredis.Redis) -> None:
    clock = Clock()
    ops = OperatorRules(redis, [failing_rule(**{"for": 0})], clock=clock)
    await ops.observe(SPY, None, boom())
    await redis.delete(keys.operator_state("SPY"))  # lost (flushed by hand, say)
    fresh = OperatorRules(redis, [failing_rule(**{"for": 0})], clock=clock)
    await fresh.observe(SPY, None, boom())  # the same episode start, so the same id
    assert len(await outbox(redis)) == 1


async def test_stale_data_judges_the_served_feeds(redis: aioredis.Redis) -> None:
    clock = Clock()
    rule = op_rule(StaleData, type="stale_data", max_age="5m", channels=["ops"])
    ops = OperatorRules(redis, [rule], clock=clock)
    now = datetime.fromtimestamp(T0, UTC)
    old = now - timedelta(hours=1)
    await ops.observe(SPY, _snap(as_of=now, flow_feed=old), None)
    clock.t += 15
    await ops.observe(SPY, None, boom())  # judged on the last snapshot: still stale, once
    await ops.observe(SPY, _snap(as_of=now + timedelta(seconds=15), flow_feed=now), None)
    events = [e for _, e in await outbox(redis)]
    assert [e.status for e in events] == ["firing", "resolved"]
    assert events[0].details["stale_feeds"] == "flow_feed"


def test_targets_share_one_copy_of_equal_feed_times_and_one_rule_list() -> None:
    # memory per target at 5,000 (issue 12): equal data_as_of values are kept once, and the
    # rules that apply to a symbol are one list per distinct set; what each target is judged
    # on is unchanged
    rule = op_rule(StaleData, type="stale_data", max_age="5m", channels=["ops"])
    only_qqq = op_rule(StaleData, type="stale_data", name="q", symbols=["QQQ"], channels=["ops"])
    ops = OperatorRules(aioredis.Redis(), [rule, only_qqq], clock=Clock())
    now = datetime.fromtimestamp(T0, UTC)
    iwm = WatchTarget("IWM", None, 15.0, 0.0)
    a, b = _snap(as_of=now, flow_feed=now), _snap(as_of=now, flow_feed=now)
    c = _snap(as_of=now, flow_feed=now - timedelta(hours=1))
    assert a.data_as_of is not b.data_as_of
    spy_seen = ops.observation(SPY, a, None).data_as_of
    iwm_seen = ops.observation(iwm, b, None).data_as_of
    assert spy_seen is iwm_seen and spy_seen == b.data_as_of
    qqq = WatchTarget("QQQ", None, 15.0, 0.0)
    assert ops.observation(qqq, c, None).data_as_of == c.data_as_of  # another value: its own
    assert ops.observation(SPY, None, boom()).data_as_of is spy_seen  # a failed poll: the last
    assert ops.applicable("SPY") is ops.applicable("IWM") == [rule]
    assert ops.applicable("QQQ") == [rule, only_qqq]


async def test_market_closed_judges_nothing(redis: aioredis.Redis) -> None:
    rule = op_rule(StaleData, type="stale_data", max_age="5m", channels=["ops"])
    ops = OperatorRules(redis, [rule], clock=Clock(), market_open=lambda: False)
    old = datetime.fromtimestamp(T0, UTC) - timedelta(days=2)
    await ops.observe(SPY, _snap(as_of=old), None)
    assert await outbox(redis) == []


async def test_a_redis_outage_is_logged_not_raised(private_redis: Any) -> None:
    redis = aioredis.Redis.from_url(private_redis.url, socket_connect_timeout=0.5)
    try:
        ops = OperatorRules(redis, [failing_rule(**{"for": 0})], clock=Clock())
        private_redis.kill()
        await ops.observe(SPY, None, boom())  # must not raise into the poller
        private_redis.start()
        await ops.observe(SPY, None, boom())  # judged again: fires now
        assert len(await outbox(redis)) == 1
    finally:
        await redis.aclose()


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (AuthError("bad key", status=401), "auth"),
        (PlanError("plan", status=403), "auth"),
        (UnknownSymbol("no such", status=404), "permanent"),
        (BadRequest("bad", status=400), "permanent"),
        (RateLimited("slow", retry_after=1.0, status=429), "rate_limited"),
        (TransientError("HTTP 502", status=502), "transient"),
        (MalformedPayload("not json"), "transient"),
    ],
)
def test_failure_kinds(exc: Exception, kind: str) -> None:
    assert failure_kind(exc) == kind  # type: ignore[arg-type]  # every case is a SourceError


def test_operator_channels_get_a_default_source_failing_rule() -> None:
    (rule,) = with_defaults([], ["ops"])
    assert isinstance(rule, SourceFailing) and rule.name == DEFAULT_RULE
    assert rule.channels == ["ops"]
    mine = failing_rule()
    assert with_defaults([mine], ["ops"]) == [mine]  # a configured one replaces the default
    assert with_defaults([], []) == []


def _snap(as_of: datetime | None = None, **feeds: datetime) -> FlowGex:
    body = flow_gex_body("SPY", as_of=as_of or datetime.fromtimestamp(T0, UTC))
    if feeds:
        body["data_as_of"] = {k: v.isoformat() for k, v in feeds.items()}
    return decode_flow_gex(msgspec.json.encode(body))


async def test_a_target_back_from_another_daemon_is_read_again(redis: aioredis.Redis) -> None:
    # a's cache says "all well"; b polled the target meanwhile and fired; when a gets the
    # target back (membership changed: forget) its first success resolves b's episode
    clock = Clock()
    a = OperatorRules(redis, [failing_rule(**{"for": 0})], clock=clock)
    b = OperatorRules(redis, [failing_rule(**{"for": 0})], clock=clock)
    await a.observe(SPY, _snap(), None)
    await b.observe(SPY, None, boom())
    a.forget()
    await a.observe(SPY, _snap(), None)
    assert [e.status for _, e in await outbox(redis)] == ["firing", "resolved"]


async def test_a_refused_key_is_one_source_wide_episode(redis: aioredis.Redis) -> None:
    # 401/403 is about the key, which every symbol shares: one event, not one per target,
    # and the targets' own episodes stay untouched; any working poll resolves it
    clock = Clock()
    ops = OperatorRules(redis, [failing_rule()], clock=clock)
    refused = AuthError("HTTP 401: invalid key", status=401)
    targets = [WatchTarget(s, None, 15.0, 0.0) for s in ("SPY", "QQQ", "IWM")]
    for t in targets:
        await ops.observe(t, None, refused)
    clock.t += 15
    await ops.observe(targets[1], _snap(), None)
    for t in targets:
        await ops.observe(t, _snap(), None)
    events = [e for _, e in await outbox(redis)]
    assert [(e.status, e.symbol) for e in events] == [("firing", "*"), ("resolved", "*")]
    assert "every symbol" in events[0].summary and "HTTP 401" in events[0].summary
    assert await redis.exists(keys.operator_state("SPY")) == 0


async def test_open_episodes_are_listed_for_healthz(redis: aioredis.Redis) -> None:
    clock = Clock()
    ops = OperatorRules(redis, [failing_rule()], clock=clock)
    await ops.observe(SPY, None, boom())
    assert ops.open_episodes() == [
        {"rule": "r", "symbol": "SPY", "expiry": None, "since": "2025-11-24T16:00:00.000Z",
         "notified": False}
    ]  # fmt: skip
    clock.t += 60
    await ops.observe(SPY, None, boom())
    assert ops.open_episodes()[0]["notified"] is True
    await ops.observe(SPY, _snap(), None)
    assert ops.open_episodes() == []


async def test_a_reload_that_changes_only_the_operator_channels_applies_them(
    redis_url: str,
) -> None:
    # the rules and the redis settings as they were: the committer is kept, the operator rules
    # are rebuilt for the new channels (and nothing is left half applied)
    from gex_alertd import config as config_mod
    from gex_alertd.app import Daemon

    def tree(operators: list[str]) -> dict[str, Any]:
        return {
            "redis": {"url": redis_url},
            "watch": {"symbols": ["SPY"]},
            "channels": {"ops": {"type": "console"}, "pager": {"type": "console"}},
            "ops": {"listen": None, "operator_channels": operators},
        }

    daemon = Daemon(config_mod.parse(tree(["ops"]), "test"))
    try:
        new = config_mod.parse(tree(["ops", "pager"]), "test")
        await daemon.reload(new)
        assert daemon.cfg is new
        assert daemon.operators.default_channels == ["ops", "pager"]
        assert [r.channels for r in daemon.operators.rules] == [["ops", "pager"]]
    finally:
        await daemon.redis.aclose()


async def test_an_outbox_key_of_another_type_refuses_the_transition_before_any_write(
    redis: aioredis.Redis,
) -> None:
    # the dedup key was set, then the XADD failed (WRONGTYPE): the event was never enqueued,
    # and once the key was fixed every later try found the dedup key and skipped it, while the
    # state moved on: the alert was lost (commit.lua checks the outbox's type first)
    clock = Clock()
    await redis.set(keys.outbox("SPY"), "not a stream")
    ops = OperatorRules(redis, [failing_rule(**{"for": 0})], clock=clock)
    await ops.observe(SPY, None, boom())
    assert await redis.keys("*alert*") == [keys.outbox("SPY").encode()]
    assert not await redis.exists(keys.operator_state("SPY"))
    await redis.delete(keys.outbox("SPY"))
    await ops.observe(SPY, None, boom())
    [(channels, event)] = await outbox(redis)
    assert channels == ["ops"] and event.type == "source_failing"


@pytest.mark.parametrize("bad", ["state", "outbox"])
async def test_a_key_of_another_type_is_one_error_line_not_one_per_poll(
    redis: aioredis.Redis, bad: str
) -> None:
    # the target's operator state (or its outbox) made another type by hand: every poll
    # logged a warning ('not committed; judged again at the next poll') for ever. Now one
    # error line naming the key, judged again every poll, and one line once it works again
    from structlog.testing import capture_logs

    key = keys.operator_state("SPY") if bad == "state" else keys.outbox("SPY")
    await redis.rpush(key, "not a hash, nor a stream")
    clock = Clock()
    ops = OperatorRules(redis, [failing_rule(**{"for": 0})], clock=clock)
    with capture_logs() as logs:
        for _ in range(3):
            await ops.observe(SPY, None, boom())
            clock.t += 15
        await redis.delete(key)
        await ops.observe(SPY, None, boom())
    assert [(e["log_level"], e.get("key")) for e in logs if "event" in e and e.get("key")] == [
        ("error", key)
    ]
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == []
    assert [e for e in logs if e["event"] == "operator rules judged again"]
    [(_channels, event)] = await outbox(redis)  # not lost: fired once the key was fixed
    assert event.type == "source_failing"


async def test_a_key_of_another_type_stays_one_line_beside_a_rule_that_touches_no_key(
    redis: aioredis.Redis,
) -> None:
    # a second operator rule whose state is cached and unchanged touches no key and succeeds:
    # it said 'judged again' every poll, and the first rule's next failure logged the error
    # line again - two lines per poll for ever. Only the rules that failed say it works again
    from structlog.testing import capture_logs

    clock = Clock()
    stale = op_rule(StaleData, name="stale", type="stale_data", max_age="5m", channels=["ops"])
    ops = OperatorRules(redis, [failing_rule(**{"for": 0}), stale], clock=clock)
    fresh = datetime.fromtimestamp(T0, UTC)
    await ops.observe(SPY, _snap(flow_feed=fresh), None)  # both clean, and remembered
    assert not await redis.exists(keys.operator_state("SPY"))
    await redis.rpush(keys.operator_state("SPY"), "not a hash")
    with capture_logs() as logs:
        for _ in range(3):
            await ops.observe(SPY, None, boom())
            clock.t += 15
    assert [e["log_level"] for e in logs if e.get("key")] == ["error"]
    assert [e for e in logs if e["event"] == "operator rules judged again"] == []
    await redis.delete(keys.operator_state("SPY"))
    with capture_logs() as logs:
        await ops.observe(SPY, None, boom())
    assert [e["event"] for e in logs if e["event"] == "operator rules judged again"] == [
        "operator rules judged again"
    ]
    fired = [(e.type, e.status) for _, e in await outbox(redis)]
    assert ("source_failing", "firing") in fired  # not lost: fired once the key was fixed
