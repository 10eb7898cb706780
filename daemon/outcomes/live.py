"""The daemon's outcome duty: once an alert's horizons have elapsed, compute its outcome once,
store it (`records`), and send the rule's `follow_up` notifications through the outbox.

How it finds alerts: it reads the outbox of each watched symbol it owns a target of
(`gex:{SYM}:alerts`, kept for the snapshot retention) from where it left off in that outbox,
starting `outcomes.lookback` back at start-up or when it comes to own the symbol, so a restart
or an ownership move picks up every alert still waiting. Only the owner of an alert's target
(rendezvous hashing over the live members, `ownership.owner`) computes it; HSETNX for the
record and SET NX on the follow-up's deterministic id make a second daemon, a restart or a
retried run harmless anyway.

When a horizon has elapsed: the alert's stream holds a snapshot at or after the horizon's end.
Redis refuses stream IDs below the top, so from then on nothing can change the path up to the
end: the outcome computed now equals the one a report computes later from the same stream.
A stream that never gets there (a halt, the daemon down, the last session before a holiday)
counts as elapsed `outcomes.settle` after the end by the wall clock.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec
import redis.asyncio as aioredis
import structlog
from redis.exceptions import NoScriptError

from gex_alertd import keys, packed
from gex_alertd.config import Config
from gex_alertd.connections import (
    REDIS_DOWN,
    StreamEntry,
    as_str,
    entries,
    entry_key,
    is_cluster,
    read_entries,
)
from gex_alertd.enqueue_once import EnqueueOnce
from gex_alertd.model import AlertEvent, as_ms, decode_alert, iso_utc
from gex_alertd.ops.calendar_load import CalendarUnavailable, NyseCalendar
from gex_alertd.outcomes import records
from gex_alertd.outcomes.alerts import is_signal
from gex_alertd.outcomes.horizons import (
    Horizon,
    Sessions,
    horizon_end,
    parse_horizon,
    parse_horizons,
)
from gex_alertd.outcomes.measure import (
    Outcome,
    direction_sign,
    measure,
    measure_alert,
    window_ended,
)
from gex_alertd.outcomes.paths import (
    last_id_command,
    last_ms,
    load_last_id,
    ms_of_last_id,
    read_path,
)
from gex_alertd.outcomes.report import alert_ms, stream_of
from gex_alertd.outcomes.stats import StreamKey
from gex_alertd.rules.base import RuleBase

log = structlog.get_logger()

PAGE = 1000
OUTBOXES_PER_TRIP = 500  # outboxes read in one pipelined round trip
FUTURE_SLACK_S = 60.0  # beyond source.max_future_s: another writer's clock may run ahead
_MAX_SEQ = 2**64 - 1  # the largest sequence part of a stream id
FOLLOW_UP_TYPE = "outcome"


def follow_up_id(alert_id: str, horizon: str) -> str:
    digest = hashlib.blake2b(f"{alert_id}\x1f{horizon}".encode(), digest_size=12).hexdigest()
    return f"fu_{digest}"


def _later(label: str, seconds: float | None) -> str:
    if seconds is None:
        return "at the close"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{int(seconds // 60)} min later"
    return f"{seconds:g} s later"


def follow_up_event(alert: AlertEvent, horizon: Horizon, outcome: Outcome) -> AlertEvent:
    """`SPY flip cross up 30 min later: +0.42%, max +0.61/-0.08%`: the plain change of spot
    and its largest rise / fall in the window, whatever the alert's direction."""
    what = f"{alert.symbol} {alert.type.replace('_', ' ')}"
    direction = alert.details.get("direction")
    if isinstance(direction, str):
        what += " " + direction.replace("_", " ")
    k = direction_sign(alert) or 1
    if outcome.change_pct is None or outcome.mfe_pct is None or outcome.mae_pct is None:
        figures = f"no figure ({outcome.status.replace('_', ' ')})"
    else:
        up, down = (
            (outcome.mfe_pct, outcome.mae_pct) if k > 0 else (-outcome.mae_pct, -outcome.mfe_pct)
        )
        figures = f"{outcome.change_pct:+.2f}%, max {up:+.2f}/{down:+.2f}%"
        if outcome.status == "gap":
            figures += " (gap in the data)"
    when = iso_utc(datetime.fromtimestamp((outcome.end_ms or alert_ms(alert)) / 1000, UTC))
    return AlertEvent(
        id=follow_up_id(alert.id, horizon.label),
        rule=alert.rule,
        type=FOLLOW_UP_TYPE,
        symbol=alert.symbol,
        expiry=alert.expiry,
        severity="info",
        as_of=when,
        fired_at=when,
        summary=f"{what} {_later(horizon.label, horizon.seconds)}: {figures}",
        details={
            "alert_id": alert.id,
            "alert_summary": alert.summary,
            "horizon": horizon.label,
            "outcome": msgspec.to_builtins(outcome),
        },
    )


@dataclass
class _Pending:
    event: AlertEvent
    stream: StreamKey
    at_ms: int
    seen_ms: int  # outbox entry time (wall clock): how long we have been waiting for it
    sent: set[str] = field(default_factory=set)  # follow-up horizons done
    stored: bool = False  # its outcome record is in Redis
    # the earliest end among its horizons still to do (None: one is due at once), and what it
    # was worked out under (the horizons, its rule's follow-ups, the session table, `stored`
    # and `sent` then)
    first_end: int | None = None
    first_end_of: tuple[Any, ...] | None = None


class OutcomeDuty:
    """`run_once` is the APScheduler duty. `config` and `owns` are read on every run, so a
    reload and a membership change apply at the next one."""

    def __init__(
        self,
        redis: aioredis.Redis,
        config: Callable[[], Config],
        owns: Callable[[str], bool],
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        calendar: NyseCalendar | None = None,
    ) -> None:
        self.redis = redis
        self.config = config
        self.owns = owns
        self.clock = clock
        # every horizon needs the day's close (`close` ends there, the others are capped at it)
        self.calendar = calendar or NyseCalendar(redis)
        self.sessions = Sessions(self.calendar.current)
        self.waiting_for_calendar = False
        self.pending: dict[str, _Pending] = {}
        self.cursors: dict[str, str] = {}  # symbol -> the XRANGE start of its outbox's rest
        self.stored = 0
        self.followed_up = 0
        self._enqueue = EnqueueOnce(redis)  # a follow-up is enqueued at most once
        self._halted = False

    def halt(self) -> None:
        """Stop at the next symbol, for good (a daemon stopping). A run over thousands of
        symbols with pending alerts takes seconds, and cancelling it is not enough: a cancel
        that lands inside a redis-py call can be swallowed there (measured: most of them), so
        the stop waited for the whole run. What is left is measured by the next process (the
        alerts are found again in the outboxes; what was stored is not stored twice)."""
        self._halted = True

    async def run_once(self) -> None:
        if self._halted:
            return
        try:
            await self._run()
        except REDIS_DOWN as exc:  # one line per run, no traceback: the next run tries again
            log.warning("alert outcomes: redis unavailable", error=str(exc))

    async def _run(self) -> None:
        cfg = self.config()
        now = as_ms(self.clock())
        await self._collect(cfg, now)
        by_stream: dict[StreamKey, list[_Pending]] = defaultdict(list)
        for p in self.pending.values():
            key = p.stream[0] if p.stream[1] is None else f"{p.stream[0]}:{p.stream[1]}"
            if self.owns(key):
                by_stream[p.stream].append(p)
        if by_stream and not await self._calendar_ready():
            return
        if by_stream:
            by_stream = self._maybe_due(cfg, by_stream, now)
        known = {} if is_cluster(self.redis) else await self._checks(by_stream)
        for stream, items in by_stream.items():
            if self._halted:
                return
            await self._stream(cfg, stream, items, now, known.get(stream))
        lookback_ms = int(cfg.outcomes.lookback * 1000)
        for aid in [a for a, p in self.pending.items() if p.seen_ms < now - lookback_ms]:
            del self.pending[aid]  # owned by someone else all along, or never reachable

    def _maybe_due(
        self, cfg: Config, by_stream: dict[StreamKey, list[_Pending]], now: int
    ) -> dict[StreamKey, list[_Pending]]:
        """The streams with an alert whose horizon may have elapsed by now; the others are not
        asked anything this run. A horizon has elapsed when the stream's top reaches its end
        or the wall clock passes it (plus `settle`), and no stream id is ahead of a writer's
        clock by more than its `source.max_future_s` (refused before the commit): an alert
        whose horizons still to do all end later than now + max_future_s + FUTURE_SLACK_S
        cannot be due. At 5,000 symbols with pending alerts a run that asked every stream was
        ~90 ms of CPU every 30 s with nothing due (two commands a stream); each alert's
        earliest end is worked out once per set of horizons, session table and progress."""
        until = now + int((cfg.source.max_future_s + FUTURE_SLACK_S) * 1000)
        named = tuple(cfg.outcomes.horizons)
        horizons = parse_horizons(cfg.outcomes.horizons)
        rules = {r.name: r for r in cfg.rules}
        table = id(self.calendar.current())  # a refreshed table is another object
        out: dict[StreamKey, list[_Pending]] = {}
        follows = {name: tuple(r.follow_up) for name, r in rules.items()}
        for stream, items in by_stream.items():
            for p in items:
                of = (named, follows.get(p.event.rule, ()), table, p.stored, len(p.sent))
                if p.first_end_of != of:
                    p.first_end_of, p.first_end = of, self._first_end(p, horizons, rules)
                if p.first_end is None or p.first_end <= until:
                    out[stream] = items
                    break
        return out

    def _first_end(
        self, p: _Pending, horizons: list[Horizon], rules: dict[str, RuleBase]
    ) -> int | None:
        """The earliest end among `p`'s follow-ups left and, until its record is stored, all
        the horizons; None when one has no end (elapsed at once) or nothing is left (the run
        drops it)."""
        wanted = self._follow_ups_left(p, rules) + ([] if p.stored else horizons)
        close = self.sessions.close_ms(p.at_ms)
        ends = [horizon_end(p.at_ms, h, close).ms for h in wanted]
        if not ends or None in ends:
            return None
        return min(e for e in ends if e is not None)

    async def _checks(
        self, by_stream: dict[StreamKey, list[_Pending]]
    ) -> dict[StreamKey, tuple[list[Any], int | None]]:
        """On one node, what `_stream` asks each stream first, for OUTBOXES_PER_TRIP streams
        per round trip: the outcome records of its pending alerts (HMGET) and its last id.
        One by one that was two round trips per symbol with pending alerts on every run (5,000
        symbols: 10,000 every 30 s, ~55 us of CPU each). Read before the run's first stream
        rather than at its turn: a record another daemon stores meanwhile is refused by HSETNX
        anyway, and a stream that grew meanwhile is measured at the next run."""
        streams = list(by_stream)
        out: dict[StreamKey, tuple[list[Any], int | None]] = {}
        for at in range(0, len(streams), OUTBOXES_PER_TRIP):
            if self._halted:
                break
            chunk = streams[at : at + OUTBOXES_PER_TRIP]
            payload = b"".join(
                packed.pack(
                    "HMGET", records.outcomes_key(s[0]), *[p.event.id for p in by_stream[s]]
                )
                + last_id_command(*s)
                for s in chunk
            )
            replies = await packed.exchange(self.redis, payload, 2 * len(chunk))
            if any(isinstance(r, NoScriptError) for r in replies):
                await load_last_id(self.redis)
                replies = await packed.exchange(self.redis, payload, 2 * len(chunk))
            for s, stored, last in zip(chunk, replies[0::2], replies[1::2], strict=True):
                for reply in (stored, last):
                    if isinstance(reply, Exception):
                        raise reply
                out[s] = (stored, ms_of_last_id(last))
        return out

    async def _calendar_ready(self) -> bool:
        """Without the session table no horizon's end is known: the alerts wait (they stay
        pending; nothing is measured against a guessed close) until a refresh succeeds."""
        try:
            await self.calendar.ensure()
        except CalendarUnavailable as exc:
            if not self.waiting_for_calendar:  # one line, not one per run
                log.warning("alert outcomes wait for the NYSE calendar", error=str(exc))
            self.waiting_for_calendar = True
            return False
        if self.waiting_for_calendar:
            log.info("alert outcomes resumed: NYSE calendar loaded")
        self.waiting_for_calendar = False
        return True

    async def _collect(self, cfg: Config, now: int) -> None:
        """New alerts of the owned symbols' outboxes, until every outbox is read to its end: on
        one node one XREAD per OUTBOXES_PER_TRIP outboxes (it returns only the outboxes with
        something new: most have nothing, and 5,000 XRANGEs cost a few % of a 5,000-symbol
        daemon's CPU, issue 12); on a cluster one XRANGE page per outbox (a multi-key command
        stays in one slot), pipelined, a bounded number per round trip."""
        floor = max(0, now - int(cfg.outcomes.lookback * 1000))
        targets = cfg.watch.entries()
        streams = {(t.symbol, t.expiry) for t in targets}
        todo = sorted({t.symbol for t in targets if self.owns(t.key)})
        read = self._xranges if is_cluster(self.redis) else self._xread
        while todo:
            # a bounded number of outboxes per round trip: 5,000 commands and replies at once
            # are megabytes the process keeps as heap afterwards (issue 12)
            now_read, todo = todo[:OUTBOXES_PER_TRIP], todo[OUTBOXES_PER_TRIP:]
            more = []
            for sym, batch in (await read(now_read, floor)).items():
                self._found(batch, streams)
                if batch:
                    self.cursors[sym] = "(" + batch[-1][0].decode()
                if len(batch) == PAGE:
                    more.append(sym)
            todo += more

    async def _xranges(self, symbols: list[str], floor: int) -> dict[str, list[StreamEntry]]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for sym in symbols:
                pipe.xrange(keys.outbox(sym), min=self._start(sym, floor), count=PAGE)
            replies = await pipe.execute()
        return {sym: entries(r) for sym, r in zip(symbols, replies, strict=True)}

    async def _xread(self, symbols: list[str], floor: int) -> dict[str, list[StreamEntry]]:
        # XREAD reads after an id: the cursor without its "(", or the last id of the ms before
        # the floor (XRANGE's floor-0 exactly: an entry of that ms is outside the lookback, and
        # a cursor left there would read its alerts a second time)
        after = {}
        for sym in symbols:
            start = self._start(sym, floor)
            if start.startswith("("):
                after[keys.outbox(sym)] = start[1:]
            else:
                ms = int(start.split("-")[0])
                after[keys.outbox(sym)] = f"{ms - 1}-{_MAX_SEQ}" if ms > 0 else "0-0"
        of = {keys.outbox(sym): sym for sym in symbols}
        reply = await self.redis.xread(after, count=PAGE)  # type: ignore[arg-type]  # str ids
        found = reply.items() if isinstance(reply, dict) else read_entries(reply or [])
        return {of[as_str(name)]: entries(items) for name, items in found}

    def _start(self, symbol: str, floor_ms: int) -> str:
        """Where to read a symbol's outbox from: after what was read, never before the
        lookback (a symbol owned again after a while: the rest is aged out anyway)."""
        cursor = self.cursors.get(symbol)
        if cursor is None or entry_key(cursor.lstrip("(")) < (floor_ms, 0):
            return f"{floor_ms}-0"
        return cursor

    def _found(self, batch: list[StreamEntry], streams: set[StreamKey]) -> None:
        for entry_id, fields in batch:
            try:
                ev = decode_alert(fields[b"event"])
            except (KeyError, ValueError):
                continue  # the dispatcher reports undecodable entries; nothing to measure
            if not is_signal(ev) or ev.id in self.pending:
                continue
            seen = entry_key(entry_id)[0]
            self.pending[ev.id] = _Pending(ev, stream_of(ev, streams), alert_ms(ev), seen)

    async def _stream(
        self,
        cfg: Config,
        stream: StreamKey,
        items: list[_Pending],
        now: int,
        known: tuple[list[Any], int | None] | None = None,
    ) -> None:
        """`known`: its records and last id as `_checks` read them (None: read them here)."""
        symbol = stream[0]
        key = records.outcomes_key(symbol)
        rules = {r.name: r for r in cfg.rules}
        if known is None:
            stored = await self.redis.hmget(key, [p.event.id for p in items])
        else:
            stored = known[0]
        todo = []
        for p, raw in zip(items, stored, strict=True):
            p.stored = p.stored or raw is not None
            if p.stored and not self._follow_ups_left(p, rules):
                del self.pending[p.event.id]  # all done (by us, another daemon, before a restart)
            else:
                todo.append((p, p.stored))
        if not todo:
            return
        top = await last_ms(self.redis, symbol, stream[1]) if known is None else known[1]
        horizons = parse_horizons(cfg.outcomes.horizons)
        settle_ms = int(cfg.outcomes.settle * 1000)

        def elapsed(p: _Pending, h: Horizon) -> bool:
            end = horizon_end(p.at_ms, h, self.sessions.close_ms(p.at_ms))
            if end.ms is None:
                return True
            return window_ended(end.ms, top, now, settle_ms)

        due = []
        for p, is_stored in todo:
            follow = [h for h in self._follow_ups_left(p, rules) if elapsed(p, h)]
            complete = not is_stored and all(elapsed(p, h) for h in horizons)
            if follow or complete:
                due.append((p, follow, complete))
        if not due:
            return
        # the path from well before the earliest due alert: its pre-alert window and the last
        # price before that window (a stream holds days; the rest is not needed)
        longest = max((h.seconds or 0.0 for h in horizons), default=0.0)
        margin_ms = int((longest + max(86_400.0, float(cfg.outcomes.max_gap))) * 1000)
        lo = min(p.at_ms for p, _f, _c in due) - margin_ms
        path = await read_path(self.redis, symbol, stream[1], max(0, lo))
        gap = float(cfg.outcomes.max_gap)
        for p, follow, complete in due:
            close = self.sessions.close_ms(p.at_ms)
            rule = rules.get(p.event.rule)
            for h in follow:
                sign = direction_sign(p.event)
                out = measure(path, p.at_ms, h, close_ms=close, sign=sign, max_gap_s=gap)
                if rule is not None and rule.channels:
                    await self._follow_up(p.event, h, out, list(rule.channels))
                p.sent.add(h.label)
            if complete:
                outs = measure_alert(path, p.event, p.at_ms, horizons, close, gap)
                rec = records.Record(p.event, outs, iso_utc(self.clock()))
                if await self.redis.hsetnx(key, p.event.id, records.encode(rec)):
                    self.stored += 1
                    log.info("alert outcome stored", alert=p.event.id, rule=p.event.rule,
                             symbol=symbol)  # fmt: skip
                p.stored = True
            if p.stored and not self._follow_ups_left(p, rules):
                del self.pending[p.event.id]

    @staticmethod
    def _follow_ups_left(p: _Pending, rules: dict[str, RuleBase]) -> list[Horizon]:
        rule = rules.get(p.event.rule)
        wanted = [parse_horizon(s) for s in (rule.follow_up if rule is not None else [])]
        return [h for h in wanted if h.label not in p.sent]

    async def _follow_up(
        self, alert: AlertEvent, h: Horizon, outcome: Outcome, channels: list[str]
    ) -> None:
        if await self._enqueue(follow_up_event(alert, h, outcome), channels):
            self.followed_up += 1
            log.info("alert follow-up enqueued", alert=alert.id, horizon=h.label,
                     symbol=alert.symbol)  # fmt: skip
