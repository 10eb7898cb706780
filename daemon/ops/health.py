"""What /healthz answers, the engine gauges in /metrics, and the systemd STATUS= line.

All read the running daemon's parts (`Parts`: what they need of it, nothing more) and change
nothing but the gauges. /healthz is `ok` exactly when `problems` is empty, and a problem is a
condition that persists, not a single event: a refused snapshot or one set aside shows in its
symbol's entry, not among the problems (three set aside in a row do: a condition). Its keys
and the wording of each problem are what operators and their probes read: they change only
with the README.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, Protocol

import redis.asyncio as aioredis

from gex_alertd.connections import REDIS_DOWN
from gex_alertd.duties import SessionGate
from gex_alertd.member import Member
from gex_alertd.operator_rules import OperatorRules
from gex_alertd.ops import metrics
from gex_alertd.ops.logging import output_problem
from gex_alertd.ownership import Membership
from gex_alertd.pipeline import ASIDE_PERSISTS, Poller
from gex_alertd.pool import PollPool
from gex_alertd.redis_errors import RedisTrouble

if TYPE_CHECKING:
    from gex_alertd.app import Stats


class Parts(Protocol):
    """The daemon as health sees it (gex_alertd.app.Daemon); parts made at the start are None
    before it."""

    @property
    def redis(self) -> aioredis.Redis: ...
    @property
    def instance_id(self) -> str: ...
    @property
    def stats(self) -> Stats: ...
    @property
    def stopping(self) -> bool: ...
    @property
    def pool(self) -> PollPool | None: ...
    @property
    def membership(self) -> Membership | None: ...
    @property
    def member(self) -> Member | None: ...
    @property
    def gate(self) -> SessionGate | None: ...
    @property
    def operators(self) -> OperatorRules: ...
    @property
    def trouble(self) -> RedisTrouble: ...
    @property
    def dispatcher(self) -> Any: ...  # notify.dispatch.Dispatcher, made at the start
    @property
    def notifier(self) -> Any: ...  # ops.sdnotify.SystemdNotifier, made at the start


async def report(d: Parts) -> dict[str, Any]:
    """The /healthz body."""
    try:
        await asyncio.wait_for(d.redis.ping(), timeout=2)
        redis_ok = True
    except (TimeoutError, *REDIS_DOWN):
        redis_ok = False
    now = time.time()
    symbols: dict[str, Any] = {}
    engine_: dict[str, Any] = {}
    if d.pool is not None:
        for k, p in d.pool.pollers.items():
            entry = d.pool.timing(k)
            if isinstance(p, Poller):
                entry.update(p.health(now))
            symbols[k] = entry
        engine_ = engine(d)
    found = problems(d, redis_ok)
    out: dict[str, Any] = {
        "ok": not found,
        "problems": found,
        "loop": True,  # answering at all means the loop runs
        "redis": redis_ok,
        "uptime_s": round(now - d.stats.started_at, 1),
        "engine": engine_,
        "symbols": symbols,
        "alerts_fired": d.stats.alerts_fired,
        # stale_data / source_failing episodes open now (as this daemon last saw them)
        "operator": d.operators.open_episodes(),
        "redis_errors": d.trouble.health(),
    }
    if d.dispatcher is not None:
        out["outbox"] = await d.dispatcher.health()
        gone = sorted(n for n, ch in out["outbox"].items() if ch.get("disabled"))
        if gone:  # a disabled channel delivers nothing: not ok until it is fixed
            out["ok"] = False
            out["channels_disabled"] = gone
            found += [f"channel {n} disabled: {out['outbox'][n]['disabled']}" for n in gone]
        found += [
            f"outbox {s} holds a {t}, not a stream: its alerts are not delivered"
            for s, t in sorted(d.dispatcher.streams.refused.items())
        ]
        found += [
            f"channel {n}: {why}"
            for n, ch in sorted(out["outbox"].items())
            for why in ch.get("blocked", [])
        ]
        out["ok"] = not found
    return out


def problems(d: Parts, redis_ok: bool) -> list[str]:
    """Why /healthz is not ok (empty: ok), but for the outbox's (`report` adds those)."""
    out = []
    if d.stopping:
        out.append("stopping")
    if not redis_ok:
        out.append("redis does not answer PING")
    out += d.trouble.problems()
    if d.member is not None and d.member.fenced:
        out.append("membership heartbeat stale: polling stopped until it reaches Redis")
    lost = output_problem()  # stdout's reader gone: nothing the daemon does is logged
    if lost:
        out.append(lost)
    if d.pool is not None:
        polled = [
            p
            for k, p in d.pool.pollers.items()
            if k in d.pool.owned and isinstance(p, Poller) and not p.disabled
        ]
        failing = [p.auth_failing for p in polled if p.auth_failing]
        if polled and len(failing) == len(polled):
            # every symbol refused: nothing is fetched at all, however alive the loop is
            out.append(f"upstream refuses the API key for every symbol: {failing[0]}")
        if d.gate is None or d.gate.open is not False:
            # while the market is closed nothing is polled, so nothing can show a fix: an
            # operator who repaired the key after the close would get 503 all night
            out += _set_aside(polled)
    return out


def _set_aside(polled: list[Poller]) -> list[str]:
    """Targets whose snapshots keep being set aside to gex:dead: their rules see nothing while
    it lasts. A few are named (each with its reason); past that they are counted, so that a
    key of another type under every symbol makes a bounded body."""
    stuck = [p for p in polled if p.aside_streak >= ASIDE_PERSISTS]
    out = [
        f"snapshots of {p.target.key} cannot be committed ({p.aside_streak} in a row set "
        f"aside to gex:dead): {p.aside_reason}"
        for p in stuck[:_NAMED]
    ]
    if len(stuck) > _NAMED:
        out.append(f"and {len(stuck) - _NAMED} more targets whose snapshots are set aside")
    return out


_NAMED = 5


def engine(d: Parts) -> dict[str, Any]:
    """/healthz `engine`: the poll engine and this daemon's membership."""
    assert d.pool is not None
    st = d.pool.stats()
    age = d.membership.age() if d.membership else None
    return {
        "targets": st.targets,
        "owned": st.owned,
        "instance": d.instance_id,
        # a stale beat means the others may have taken our targets (timeout 15 s)
        "heartbeat_age_s": None if age is None else round(age, 3),
        "members": list(d.membership.members) if d.membership else [],
        "fenced": d.member is not None and d.member.fenced,
        "queued": st.queued,
        "running": st.running,
        "paused": st.paused,
        "market_open": None if d.gate is None else d.gate.open,
        "overdue_s": round(st.overdue_s, 3),
        "target_interval_s": _round(st.target_interval_s),
        "achieved_interval_s": _round(st.achieved_interval_s),
    }


async def gauges(d: Parts) -> None:
    """The engine's figures into /metrics and the systemd STATUS= line (a duty)."""
    if d.pool is None:
        return
    st = d.pool.stats()
    metrics.WATCH_TARGETS.set(st.owned)
    metrics.POLL_OVERDUE.set(st.overdue_s)
    if st.target_interval_s is not None:
        metrics.POLL_INTERVAL_TARGET.set(st.target_interval_s)
    if st.achieved_interval_s is not None:
        metrics.POLL_INTERVAL_ACHIEVED.set(st.achieved_interval_s)
    if d.membership is not None:
        metrics.MEMBERS.set(len(d.membership.members))
    if d.notifier is not None:
        d.notifier.status(status_line(d))  # ops: STATUS=


def status_line(d: Parts) -> str:
    n = len(d.pool.owned) if d.pool else 0
    return f"watching {n} symbols, {d.stats.alerts_fired} alerts fired"


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 3)
