"""Ownership: rendezvous hashing over the members a heartbeat finds alive in a real Redis.

Beats pass their own `now_ms`, so expiry is decided by the test's clock, not the machine's.
"""

from __future__ import annotations

from collections import Counter

import redis.asyncio as aioredis

from gex_alertd.ownership import Membership, assign, owner

KEYS = [f"S{i:04d}" for i in range(3000)]
INTERVALS = dict.fromkeys(KEYS, 15.0)


def test_every_key_has_one_owner_and_the_split_is_fair():
    members = ["a:1", "b:2", "c:3"]
    owners = Counter(owner(k, members) for k in KEYS)
    assert set(owners) == set(members)
    assert all(abs(n - 1000) < 120 for n in owners.values()), owners
    # the member order does not matter: every daemon computes the same owner
    assert all(owner(k, members) == owner(k, list(reversed(members))) for k in KEYS[:200])
    assert owner("SPY", []) is None


def test_a_member_leaving_moves_only_its_own_targets():
    three, two = ["a:1", "b:2", "c:3"], ["a:1", "b:2"]
    moved = [k for k in KEYS if owner(k, three) != owner(k, two)]
    assert moved and all(owner(k, three) == "c:3" for k in moved)
    # and a member joining takes only from the others, spread over all of them
    four = [*three, "d:4"]
    taken = [k for k in KEYS if owner(k, three) != owner(k, four)]
    assert all(owner(k, four) == "d:4" for k in taken)
    assert 600 < len(taken) < 900


def test_handover_waits_for_a_live_owner_but_not_for_a_dead_one():
    before = ["a:1", "b:2"]
    # c joins: what it takes from a and b (alive) waits an interval plus a beat
    joined = assign("c:3", KEYS, before, ["a:1", "b:2", "c:3"], INTERVALS, 5.0)
    assert joined.owned and set(joined.delays) == set(joined.owned)
    assert set(joined.delays.values()) == {20.0}
    # b dies: what a takes from it is polled at once
    after_death = assign("a:1", KEYS, before, ["a:1"], INTERVALS, 5.0)
    from_b = {k for k in KEYS if owner(k, before) == "b:2"}
    assert after_death.owned == frozenset(KEYS) and not (from_b & set(after_death.delays))
    # alone from the start: everything, at once
    alone = assign("a:1", KEYS, [], ["a:1"], INTERVALS, 5.0)
    assert alone.owned == frozenset(KEYS) and not alone.delays


async def test_heartbeats_expire_a_dead_member_and_leave_removes_at_once(redis: aioredis.Redis):
    a = Membership(redis, "a:1", timeout_s=15.0)
    b = Membership(redis, "b:2", timeout_s=15.0)
    t = 1_800_000_000_000  # ms; beyond 2**31 and printed without an exponent by the script
    assert await a.beat(t) == ("a:1",) and not a.was_member
    assert await b.beat(t + 1000) == ("a:1", "b:2")
    assert await a.beat(t + 2000) == ("a:1", "b:2") and a.was_member  # our entry was there
    # b stops beating (killed): still a member until 15 s after its last beat
    assert await a.beat(t + 16_000) == ("a:1", "b:2")
    assert await a.beat(t + 16_001) == ("a:1",)
    assert a.members == ("a:1",)
    # b comes back (its entry had expired: new again), then leaves cleanly: gone at once
    await b.beat(t + 17_000)
    assert not b.was_member
    assert await a.beat(t + 17_001) == ("a:1", "b:2")
    await b.leave()
    assert await a.beat(t + 17_002) == ("a:1",)


async def test_the_server_clock_is_used_by_default(redis: aioredis.Redis):
    a = Membership(redis, "a:1")
    assert await a.beat() == ("a:1",)
    score = await redis.zscore("gex:members", "a:1")
    seconds, micros = await redis.time()
    assert score is not None and abs(score - (seconds * 1000 + micros // 1000)) < 60_000
