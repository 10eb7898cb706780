"""Where the report's alerts come from: the live ones (the symbols' outboxes and the stored
outcome records), a `gex-alertd replay --out` file, or a replay of the configured rules right
here.

Only firing alerts of signal rules count: operator and data-health alerts (flip_guard too),
resolved events and outcome follow-ups are not signals.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import msgspec
import redis.asyncio as aioredis

from gex_alertd import keys
from gex_alertd.config import RedisConfig
from gex_alertd.connections import entries
from gex_alertd.model import AlertEvent, decode_alert
from gex_alertd.outcomes import records
from gex_alertd.outcomes.report import alert_ms
from gex_alertd.rules.base import RuleBase

# flip_guard judges the data (a flip implausibly far or missing), not the market
NOT_SIGNALS = frozenset(
    {"operator", "outcome", "stale_data", "source_failing", "heartbeat", "flip_guard"}
)


def is_signal(ev: AlertEvent) -> bool:
    return ev.type not in NOT_SIGNALS and ev.status == "firing"


MAX_LINE = 1 << 20  # a replay file line is one alert: a megabyte is already absurd


@dataclass(frozen=True)
class Filter:
    rules: frozenset[str] = frozenset()
    symbols: frozenset[str] = frozenset()
    start_ms: int | None = None
    end_ms: int | None = None

    def keep(self, ev: AlertEvent) -> bool:
        if not is_signal(ev):
            return False
        if self.rules and ev.rule not in self.rules:
            return False
        if self.symbols and ev.symbol.upper() not in self.symbols:
            return False
        at = alert_ms(ev)
        if self.start_ms is not None and at < self.start_ms:
            return False
        return self.end_ms is None or at <= self.end_ms


def _unique(events: Iterable[AlertEvent], flt: Filter) -> list[AlertEvent]:
    seen: dict[str, AlertEvent] = {}
    for ev in events:
        if ev.id not in seen and flt.keep(ev):
            seen[ev.id] = ev
    return list(seen.values())


async def live_alerts(
    redis: aioredis.Redis, symbols: Iterable[str], flt: Filter, on_error: Callable[[str, str], None]
) -> list[AlertEvent]:
    """The alerts of `symbols` still in their outboxes or in their stored outcome records."""
    found: list[AlertEvent] = []
    for sym in sorted(set(symbols)):
        outbox = keys.outbox(sym)
        lo = "-"
        while True:
            batch = entries(await redis.xrange(outbox, min=lo, count=2000))
            for entry_id, fields in batch:
                try:
                    found.append(decode_alert(fields[b"event"]))
                except (KeyError, msgspec.DecodeError, msgspec.ValidationError) as exc:
                    on_error(f"{outbox} {entry_id.decode()}", f"undecodable alert: {exc}")
            if len(batch) < 2000:
                break
            lo = "(" + batch[-1][0].decode()
        key = records.outcomes_key(sym)
        async for field, raw in redis.hscan_iter(key, count=500):
            try:
                found.append(records.decode(raw).alert)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                on_error(f"{key} {field.decode()}", f"undecodable outcome record: {exc}")
    return _unique(found, flt)


def file_alerts(path: Path, flt: Filter, on_error: Callable[[str, str], None]) -> list[AlertEvent]:
    """One AlertEvent JSON per line (`gex-alertd replay --out`); a bad line is reported with
    its number and skipped."""
    found: list[AlertEvent] = []
    with path.open("rb") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            if len(line) > MAX_LINE:
                on_error(f"{path}:{lineno}", f"line longer than {MAX_LINE} bytes")
                continue
            try:
                found.append(decode_alert(line))
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                on_error(f"{path}:{lineno}", f"not an alert event: {exc}")
    return _unique(found, flt)


async def replayed_alerts(
    redis_url: str | RedisConfig,
    rules: list[RuleBase],
    targets: list[tuple[str, str | None]],
    flt: Filter,
    on_error: Callable[[str, str], None],
) -> list[AlertEvent]:
    """The configured rules replayed over the stored streams (state starts empty at --from,
    exactly as `gex-alertd replay`)."""
    from gex_alertd.replay_streams import replay_streams

    result = await replay_streams(redis_url, rules, targets, flt.start_ms, flt.end_ms)
    for where, msg in result.bad:
        on_error(where, msg)
    return _unique((em.event for em in result.emitted), flt)
