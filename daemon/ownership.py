"""Who polls what: daemons sharing a Redis register with a heartbeat and split the targets.

Each daemon refreshes its entry in the `gex:members` sorted set (score: the Redis server's
clock in ms, so clock skew between hosts does not matter) and, in the same script, drops
members whose last beat is older than the timeout and reads the live set. Every target is
owned by one live member, picked by rendezvous hashing: the member with the highest
hash(member, target). Every daemon computes the same owner from the same member list with no
round trip per poll, and a member joining or leaving moves only its own share of targets.

Hand-over rules (see `Handover`):
  - a target whose owner died (its entry expired or it left) is polled at once: nobody else
    is polling it. A dead member is dropped `timeout_s` after its last beat and the others
    see it at their next beat, so its targets move within timeout_s + beat_s, under 2x the
    timeout;
  - a target that moves from a live member (one joined) is first polled one interval plus one
    beat later: the old owner sees the new member at its next beat at the latest and stops,
    so the target is not polled twice within an interval;
  - a daemon that restarts before its entry expired (same instance name) takes its own targets
    back at once: nobody else polled them meanwhile;
  - Redis unreachable: the last known member list stands (the stream IDs, derived from
    `as_of`, make a double write harmless anyway), but not for ever: a daemon whose heartbeat
    has not reached Redis for `FENCE_S` while it knew of other members stops polling (it is
    fenced), because the others drop its entry `timeout_s` after its last beat and take its
    targets at once. It polls again from its next beat that succeeds: its own targets at once
    if its entry was still there (nobody took them), else as a member joining.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Mapping, Sequence

import redis.asyncio as aioredis
from msgspec import Struct

from gex_alertd import keys

HEARTBEAT_S = 5.0
TIMEOUT_S = 15.0
# the others drop our entry TIMEOUT_S after the server took our last beat; we count from before
# we sent it, and one beat's margin covers a poll that had already started when the fence fell
FENCE_S = TIMEOUT_S - HEARTBEAT_S

# ARGV: member, timeout ms, now ms ('' = the server's clock). Returns {1 if our entry was new,
# the live members}.
_BEAT = """
local now = tonumber(ARGV[3])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- %d: Lua 5.1 would print a large number in exponent form
local added = redis.call('ZADD', KEYS[1], string.format('%d', now), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. string.format('%d', now - tonumber(ARGV[2])))
return {added, redis.call('ZRANGE', KEYS[1], 0, -1)}
"""


def _weight(member: str, key: str) -> int:
    digest = hashlib.blake2b(f"{member}\x1f{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def owner(key: str, members: Sequence[str]) -> str | None:
    """The member that owns `key` (rendezvous hashing), None when there is no member."""
    best: str | None = None
    best_w = -1
    for m in members:
        w = _weight(m, key)
        if w > best_w or (w == best_w and best is not None and m < best):
            best, best_w = m, w
    return best


class Handover(Struct, frozen=True):
    owned: frozenset[str]
    delays: dict[str, float]  # newly owned keys that were a live member's: wait this long


def assign(
    me: str,
    keys: Iterable[str],
    before: Sequence[str],
    after: Sequence[str],
    intervals: Mapping[str, float],
    beat_s: float,
) -> Handover:
    """What `me` owns under the member list `after`, and how long each newly owned target
    waits (`before` is the list this daemon believed until now; a daemon just starting passes
    the current list without itself)."""
    members = list(after) if me in after else [*after, me]
    alive = set(members)
    owned: set[str] = set()
    delays: dict[str, float] = {}
    for key in keys:
        if owner(key, members) != me:
            continue
        owned.add(key)
        previous = owner(key, before)
        if previous is not None and previous != me and previous in alive:
            delays[key] = intervals.get(key, 0.0) + beat_s
    return Handover(frozenset(owned), delays)


class Membership:
    """This daemon's entry in `gex:members`, and the live list from its last beat."""

    def __init__(
        self,
        redis: aioredis.Redis,
        me: str,
        *,
        timeout_s: float = TIMEOUT_S,
        key: str = keys.MEMBERS,
    ) -> None:
        self.redis = redis
        self.me = me
        self.timeout_s = timeout_s
        self.key = key
        self.members: tuple[str, ...] = (me,)
        self.was_member = False
        self.beat_at: float | None = None  # time.monotonic() when the last good beat was sent
        self._script = redis.register_script(_BEAT)

    async def beat(self, now_ms: int | None = None) -> tuple[str, ...]:
        """Refresh our entry, expire the dead, return the live members (sorted). `now_ms`
        replaces the server clock (tests)."""
        sent = time.monotonic()
        added, reply = await self._script(
            keys=[self.key],
            args=[self.me, int(self.timeout_s * 1000), "" if now_ms is None else now_ms],
        )
        # our entry was still there: this daemon restarted within the timeout (a crash, a
        # SIGKILL), so nobody else polled its targets in between
        self.was_member = not added
        live = sorted(m.decode() if isinstance(m, bytes) else str(m) for m in reply)
        self.members = tuple(live)
        self.beat_at = sent
        return self.members

    def age(self, now: float | None = None) -> float | None:
        """Seconds since the last beat that reached Redis was sent (`now`: time.monotonic()
        by default); None before the first."""
        if self.beat_at is None:
            return None
        return (time.monotonic() if now is None else now) - self.beat_at

    def stale(self, now: float | None = None, fence_s: float = FENCE_S) -> bool:
        """True when the others may have dropped our entry by now (no beat of ours reached
        Redis for `fence_s`) and there are others to take our targets. A daemon alone keeps
        polling through a Redis outage: nobody else would poll its targets."""
        age = self.age(now)
        if age is None or age < fence_s:
            return False
        return any(m != self.me for m in self.members)

    async def leave(self) -> None:
        """Remove our entry so the others take our targets at their next beat."""
        await self.redis.zrem(self.key, self.me)
