"""The edge of the operator rules (stale_data, source_failing): observe every poll, commit
each transition exactly once.

Each poll's outcome becomes an `Observation` (rules.operator) for every operator rule that
applies to the target; the pure rule returns its new episode state and at most one event.
Exactly once: the state of (target, rule) lives in one field of `gex:{SYM}:opstate`; a
transition is committed by `operator.lua`, which compares the field with the value the
evaluation started from and then writes the new state and XADDs the event in one step. A
conflict (another daemon, or a restart that read an older value) re-reads and re-evaluates,
so the transition is applied once; event ids derive from the episode's start, and the script
enqueues an id once (`SET NX`), a second guard. Polls that change nothing (the normal case)
write nothing: the last stored value is kept in memory.

A Redis error is logged and the transition is evaluated again at the next poll (the state
in Redis is untouched, so nothing fires twice; the episode may start a poll later).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from importlib import resources
from typing import Any

import msgspec
import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from gex_alertd import keys, redaction
from gex_alertd.commit import DEDUP_TTL_MS
from gex_alertd.config import WatchTarget
from gex_alertd.connections import REDIS_DOWN, as_str, key_types
from gex_alertd.model import AlertEvent, FlowGex, as_ms, outbox_fields
from gex_alertd.ops import metrics
from gex_alertd.redis_errors import is_wrongtype
from gex_alertd.rules.base import RuleBase
from gex_alertd.rules.engine import alert_id
from gex_alertd.rules.operator import Episode, FailureKind, Observation, OpFired, iso_ms
from gex_alertd.rules.registry import is_operator, operator_type
from gex_alertd.rules.source_failing import SourceFailing
from gex_alertd.sources.errors import (
    AuthError,
    BadRequest,
    RateLimited,
    SourceError,
    UnknownSymbol,
)

log = structlog.get_logger()

LUA = resources.files("gex_alertd").joinpath("operator.lua").read_text()
MAX_ATTEMPTS = 5
DEFAULT_RULE = "source-failing"
SOURCE_WIDE = "*"  # the symbol of a source_failing episode about the key (401/403)

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Episode)
CLEAN = _encoder.encode(Episode())


def failure_kind(exc: SourceError) -> FailureKind:
    if isinstance(exc, AuthError):
        return "auth"
    if isinstance(exc, UnknownSymbol | BadRequest):
        return "permanent"
    if isinstance(exc, RateLimited):
        return "rate_limited"
    return "transient"


def decode_episode(raw: bytes) -> Episode | None:
    """None for an empty or unreadable value: the rule starts over (a clean episode)."""
    if not raw:
        return None
    try:
        return _decoder.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def with_defaults(rules: Sequence[RuleBase], operator_channels: Sequence[str]) -> list[RuleBase]:
    """The operator rules to run: the configured ones, plus, when `ops.operator_channels` is
    set and no source_failing rule is configured, a default one routed there (it replaces
    the old immediate 401/403 operator alert, which it keeps: auth failures fire at once)."""
    out = [r for r in rules if is_operator(r)]
    if operator_channels and not any(isinstance(r, SourceFailing) for r in out):
        out.append(SourceFailing(name=DEFAULT_RULE, channels=list(operator_channels)))
    return out


def operator_event(rule: RuleBase, obs: Observation, fired: OpFired) -> AlertEvent:
    """`as_of` and `fired_at` are the instant of the poll that decided it (there may be no
    snapshot); the data's own `as_of` is in the details where it matters."""
    at = iso_ms(obs.now_ms)
    return AlertEvent(
        id=alert_id(rule.name, obs.symbol, obs.expiry, fired.since_ms, status=fired.status),
        rule=rule.name,
        type=operator_type(rule).name,
        symbol=obs.symbol,
        expiry=obs.expiry,
        severity=rule.severity,
        as_of=at,
        fired_at=at,
        summary=fired.summary,
        status=fired.status,
        details=fired.details,
    )


def event_args(event: AlertEvent, channels: list[str]) -> list[Any]:
    """operator.lua's ARGV tail for one event: its channels' consumer groups (created on the
    outbox before the entry), then the outbox entry's fields."""
    groups = [keys.notify_group(c) for c in channels]
    fields = [x for kv in outbox_fields(event, channels).items() for x in kv]
    return [len(groups), *groups, *fields]


class OperatorRules:
    def __init__(
        self,
        redis: aioredis.Redis,
        rules: Sequence[RuleBase],
        default_channels: Sequence[str] = (),
        *,
        clock: Callable[[], float] = time.time,
        market_open: Callable[[], bool] = lambda: True,
    ) -> None:
        self.redis = redis
        self.rules = [r for r in rules if is_operator(r)]
        self.default_channels = list(default_channels)
        self.clock = clock
        self.market_open = market_open
        self._script = redis.register_script(LUA)
        # (rule, symbol, expiry) -> the value last read from or written to Redis
        self._stored: dict[tuple[str, str, str | None], bytes] = {}
        # the newest snapshot seen per target: a failed poll is judged on it (stale_data)
        self._seen: dict[tuple[str, str | None], tuple[int, dict[str, str | None] | None]] = {}
        # one data_as_of object per distinct value, not per target: the feeds' times are the
        # provider's, the same for every symbol polled in the same minute (~0.4 KB a target)
        self._feeds: dict[tuple[tuple[str, str | None], ...], dict[str, str | None]] = {}
        self._applicable: dict[str, list[RuleBase]] = {}
        # one list per distinct set of rules, not per symbol
        self._rule_sets: dict[tuple[int, ...], list[RuleBase]] = {}
        self.enqueued = 0  # events this process enqueued (the heartbeat reports it)
        # targets whose state or outbox key holds another type, said once (`_wrong_type`), with
        # the rules that failed on it: only their success says it works again (another rule's,
        # cached and unchanged, touches no key)
        self._wrong_type_targets: dict[tuple[str, str | None], set[str]] = {}

    def forget(self) -> None:
        """Drop the remembered states: another daemon may have written them (targets moved
        between daemons). Each is read again at its next poll."""
        self._stored.clear()

    def open_episodes(self) -> list[dict[str, Any]]:
        """The bad episodes this process knows of (for /healthz): rule, target, since, and
        whether the firing event was sent."""
        out = []
        for (rule, symbol, expiry), raw in self._stored.items():
            ep = decode_episode(raw)
            if ep is not None and ep.since_ms is not None:
                out.append(
                    {"rule": rule, "symbol": symbol, "expiry": expiry,
                     "since": iso_ms(ep.since_ms), "notified": ep.notified}
                )  # fmt: skip
        return sorted(out, key=lambda e: (e["rule"], e["symbol"], e["expiry"] or ""))

    def applicable(self, symbol: str) -> list[RuleBase]:
        found = self._applicable.get(symbol)
        if found is None:
            which = tuple(i for i, r in enumerate(self.rules) if r.applies_to(symbol))
            found = self._rule_sets.get(which)
            if found is None:
                found = self._rule_sets[which] = [self.rules[i] for i in which]
            self._applicable[symbol] = found
        return found

    def _shared_feeds(self, feeds: dict[str, str | None] | None) -> dict[str, str | None] | None:
        if not feeds:
            return feeds
        value = tuple(feeds.items())
        found = self._feeds.get(value)
        if found is None:
            if len(self._feeds) >= 256:  # bounded; targets keep the ones they hold
                self._feeds.clear()
            found = self._feeds[value] = feeds
        return found

    def observation(
        self, target: WatchTarget, snap: FlowGex | None, exc: SourceError | None
    ) -> Observation:
        key = (target.symbol, target.expiry)
        if snap is not None:
            self._seen[key] = (as_ms(snap.as_of), self._shared_feeds(snap.data_as_of))
        as_of_ms, data_as_of = self._seen.get(key, (None, None))
        return Observation(
            symbol=target.symbol,
            expiry=target.expiry,
            now_ms=int(self.clock() * 1000),
            market_open=self.market_open(),
            as_of_ms=as_of_ms,
            data_as_of=data_as_of,
            failure=None if exc is None else failure_kind(exc),
            error="" if exc is None else redaction.redact(str(exc))[:500],
            status=None if exc is None else exc.status,
        )

    async def observe(
        self, target: WatchTarget, snap: FlowGex | None, exc: SourceError | None
    ) -> None:
        """The poller's hook: never raises (a Redis problem is logged and retried next poll)."""
        rules = self.applicable(target.symbol)
        if not rules:
            return
        obs = self.observation(target, snap, exc)
        source_wide = msgspec.structs.replace(obs, symbol=SOURCE_WIDE, expiry=None)
        for rule in rules:
            if not isinstance(rule, SourceFailing):
                await self._guarded(rule, obs)
            elif obs.failure == "auth":
                # the key is refused for every symbol at once: one episode for the source,
                # not one per target (the target's own episode neither starts nor ends)
                await self._guarded(rule, source_wide)
            else:
                await self._guarded(rule, obs)
                if obs.failure is None:  # a poll that works ends a source-wide episode
                    await self._guarded(rule, source_wide)

    async def _guarded(self, rule: RuleBase, obs: Observation) -> None:
        target = (obs.symbol, obs.expiry)
        try:
            await self._apply(rule, obs)
        except (*REDIS_DOWN, RedisError) as err:
            self._stored.pop((rule.name, obs.symbol, obs.expiry), None)  # read it again
            if is_wrongtype(err):
                await self._wrong_type(target, rule.name, err)
                return
            log.warning(
                "operator rule not committed; judged again at the next poll",
                rule=rule.name,
                symbol=obs.symbol,
                error=redaction.redact(f"{type(err).__name__}: {err}"),
            )
        else:
            failing = self._wrong_type_targets.get(target)
            if failing is not None and rule.name in failing:
                failing.discard(rule.name)
                if not failing:
                    del self._wrong_type_targets[target]
                    log.info("operator rules judged again", symbol=obs.symbol, expiry=obs.expiry)

    async def _wrong_type(self, target: tuple[str, str | None], rule: str, err: Exception) -> None:
        """A key of the target's operator rules holds another type (made by hand): one error
        line naming it, not a warning every poll for ever; judged again at every poll."""
        failing = self._wrong_type_targets.get(target)
        if failing is not None:
            failing.add(rule)
            return
        self._wrong_type_targets[target] = {rule}
        read = {keys.operator_state(*target): "hash", keys.outbox(target[0]): "stream"}
        try:
            found = await key_types(self.redis, list(read))
        except (*REDIS_DOWN, RedisError):
            found = {}
        wrong = [k for k, t in found.items() if t not in (read[k], "none")]
        log.error(
            "operator rules not judged: a key holds another type; judged again every poll",
            key=wrong[0] if len(wrong) == 1 else wrong or None,
            symbol=target[0],
            expiry=target[1],
            error=redaction.redact(str(err)),
        )

    async def _apply(self, rule: RuleBase, obs: Observation) -> None:
        slot = (rule.name, obs.symbol, obs.expiry)
        skey = keys.operator_state(obs.symbol, obs.expiry)
        known = self._stored.get(slot)
        stored = known if known is not None else _raw(await self.redis.hget(skey, rule.name))
        observe = operator_type(rule).observe
        for _ in range(MAX_ATTEMPTS):
            state, fired = observe(rule, decode_episode(stored), obs)
            new = _encoder.encode(state)
            # an absent field and a clean episode mean the same: no write for either
            if not fired and (new == stored or (not stored and new == CLEAN)):
                self._stored[slot] = stored
                return
            event = operator_event(rule, obs, fired[0]) if fired else None
            reply = await self._commit(obs.symbol, skey, rule.name, stored, new, event, rule)
            status = as_str(reply[0])
            if status == "conflict":
                stored = _raw(reply[1])
                continue
            self._stored[slot] = new
            if event is not None:
                self._announce(event, enqueued=bool(int(reply[1])))
            return
        log.warning("operator rule state kept changing; judged again next poll", rule=rule.name)
        self._stored.pop(slot, None)

    async def _commit(
        self,
        obs_symbol: str,
        skey: str,
        field: str,
        expected: bytes,
        new: bytes,
        event: AlertEvent | None,
        rule: RuleBase,
    ) -> Any:
        args: list[Any] = [field, expected, new, DEDUP_TTL_MS]
        dedup = skey  # unused without an event; any key of the same slot
        if event is not None:
            dedup = keys.alert_dedup(event.symbol, event.id)
            args += event_args(event, list(rule.channels) or self.default_channels)
        return await self._script(keys=[skey, keys.outbox(obs_symbol), dedup], args=args)

    def _announce(self, event: AlertEvent, *, enqueued: bool) -> None:
        bound = log.bind(symbol=event.symbol, expiry=event.expiry, rule=event.rule)
        if not enqueued:
            bound.warning("alert_already_enqueued", alert_id=event.id)
            return
        self.enqueued += 1
        metrics.ALERTS_FIRED.labels(event.rule).inc()
        bound.info("alert_fired", alert_id=event.id, status=event.status, summary=event.summary)


def _raw(value: Any) -> bytes:
    if value is None:
        return b""
    return value if isinstance(value, bytes) else str(value).encode()
