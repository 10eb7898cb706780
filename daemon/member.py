"""This daemon as a member of the shared Redis: its heartbeat, its fence, the targets it owns.

ownership.py says who owns what (rendezvous hashing, the hand-over delays) and keeps the entry
in `gex:members`; this module acts on it for one running daemon, on its poll pool:
  - each beat refreshes the entry and queues exactly the targets this daemon owns under the
    member list the beat read; a beat that fails keeps the last list (a daemon joining still
    takes its share of it, so it polls from the start);
  - the fence: once no beat reached Redis for `fence_s` while others are known, the pool owns
    nothing until a beat succeeds, because the others drop our entry and take our targets.
    The countdown is a timer re-armed by every good beat, not the beat's failure path: a beat
    that hangs on a Redis failover never fails in time;
  - while fenced, nothing is owned, whatever asks (a reload included);
  - every change of what is owned is told (`on_moved`): an operator rule state or an outbox
    another daemon wrote may be ours now.
It never polls and never reads an outbox itself. `instance_id` is this daemon's name among
the members.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
from collections.abc import Callable

import structlog
from redis.exceptions import RedisError

from gex_alertd import keys, redaction
from gex_alertd.config import Config
from gex_alertd.connections import REDIS_DOWN, describe
from gex_alertd.ownership import FENCE_S, HEARTBEAT_S, Membership, assign, owner
from gex_alertd.pool import PollPool
from gex_alertd.redis_errors import classify

log = structlog.get_logger()


def instance_id(cfg: Config) -> str:
    """This daemon's name among the members: stable across restarts (a restarted daemon takes
    its own targets back at once instead of waiting for its old entry to expire), distinct for
    two daemons on one host with different config files."""
    redis = cfg.redis.url or describe(cfg.redis)  # cluster/sentinel: their node lists
    where = f"{os.path.abspath(cfg.path) if cfg.path else '-'}\x1f{redis}"
    digest = hashlib.blake2b(where.encode(), digest_size=4).hexdigest()
    return f"{socket.gethostname()}:{digest}"


class Member:
    def __init__(
        self,
        membership: Membership,
        pool: PollPool,
        *,
        on_moved: Callable[[], None],
        stopping: Callable[[], bool],
        fence_s: float = FENCE_S,
    ) -> None:
        self.membership = membership
        self.pool = pool
        self.fence_s = fence_s  # see ownership: no beat for this long, others known: stop polling
        self.fenced = False
        self._on_moved = on_moved
        self._stopping = stopping
        self._fence_timer: asyncio.TimerHandle | None = None

    async def beat(self, *, joining: bool = False) -> None:
        """Heartbeat: refresh our membership and queue exactly the targets we own."""
        before = self.membership.members
        try:
            after = await self.membership.beat()
        except (*REDIS_DOWN, RedisError) as exc:
            # also a Redis that answers but refuses (OOM, READONLY): one line per beat, every 5 s
            log.warning(
                "membership heartbeat failed; keeping the last member list",
                error_class=classify(exc),
                error=redaction.redact(str(exc)),
            )
            if joining:
                self.own(before, before)
            return
        self._arm_fence()
        if self.fenced:
            self.fenced = False
            log.warning("membership heartbeat reached Redis again; polling resumes")
            # our entry expired meanwhile if it was added again: the others took our targets
            # and let go of them when they see us, as for a member joining
            joining = True
        if joining and not self.membership.was_member:
            # new here: what we take, live members were polling until they see us
            before = tuple(m for m in after if m != self.membership.me)
        if after != before or joining:
            if not joining:
                log.info("members changed", members=len(after), before=len(before))
            self.own(before, after)

    def _arm_fence(self) -> None:
        """(Re)start the countdown to `_fence` from the beat that just succeeded."""
        age = self.membership.age()
        assert age is not None
        if self._fence_timer is not None:
            self._fence_timer.cancel()
        left = self.fence_s - age
        self._fence_timer = asyncio.get_running_loop().call_later(max(0.0, left), self._fence)

    def _fence(self) -> None:
        self._fence_timer = None
        if self.fenced or self._stopping():
            return
        if not self.membership.stale(fence_s=self.fence_s):
            return  # alone: nobody takes our targets, keep polling (the next beat re-arms)
        self.fenced = True
        log.warning(
            "membership heartbeat stale: stopped polling until it reaches Redis again, so a "
            "target is not polled by this daemon and the one the others give it to",
            heartbeat_age_s=round(self.membership.age() or 0.0, 3),
            owned=len(self.pool.owned),
        )
        self.pool.own(())

    def own(self, before: tuple[str, ...], after: tuple[str, ...]) -> None:
        """Queue the targets owned under `after` (`before`: the list believed until now)."""
        if self.fenced:
            self.pool.own(())  # a reload while fenced: still nothing until a beat succeeds
            return
        intervals = {k: p.target.interval_s for k, p in self.pool.pollers.items()}
        plan = assign(self.membership.me, intervals, before, after, intervals, HEARTBEAT_S)
        self.pool.own(plan.owned, delays=plan.delays)
        self._on_moved()

    def owns(self, key: str) -> bool:
        return owner(key, self.membership.members) == self.membership.me

    def owns_outbox(self, stream: str) -> bool:
        # nobody known: read everything, the consumer groups still hand each entry to one
        # consumer
        if not self.membership.members:
            return True
        # owned like the symbol's (expiry-less) watch target, so the daemon that polls a
        # symbol also reads its outbox: its own commits' alerts never wait for a sweep
        return self.owns(keys.symbol_of_outbox(stream) or stream)

    async def leave(self, timeout_s: float) -> None:
        """Stop the fence's countdown and remove our entry, so the others take our targets at
        their next beat instead of after the timeout."""
        if self._fence_timer is not None:
            self._fence_timer.cancel()
        try:
            await asyncio.wait_for(self.membership.leave(), timeout_s)
        except (TimeoutError, *REDIS_DOWN) as exc:
            log.warning("could not leave the membership", error=str(exc) or "timed out")
