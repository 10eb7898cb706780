"""Synthetic snapshot streams in a real Redis, for the outcome tests and the bench."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime

import redis.asyncio as aioredis

from gex_alertd import keys, store
from gex_alertd.config import RedisConfig
from gex_alertd.model import AlertEvent, decode_flow_gex, outbox_fields
from tests.support.upstream import flow_gex_body

NO_TRIM = RedisConfig(url="redis://unused", retention=None)


async def store_path(
    redis: aioredis.Redis,
    symbol: str,
    times_ms: Sequence[int],
    spots: Sequence[float],
    nets: Sequence[float] | None = None,
    *,
    strikes: int = 20,
) -> None:
    """One full snapshot per (time, spot[, net]), strike block included, as the daemon stores it."""
    pipe = redis.pipeline(transaction=False)
    for i, (ms, spot) in enumerate(zip(times_ms, spots, strict=True)):
        body = flow_gex_body(
            symbol, as_of=datetime.fromtimestamp(ms / 1000, UTC), spot=spot, strikes=strikes
        )
        if nets is not None:
            body["live_net_gex"] = nets[i]
        snap = decode_flow_gex(json.dumps(body).encode())
        fields = store.encode_fields(snap)
        pipe.xadd(keys.snap(symbol), fields, id=store.entry_id(snap))  # type: ignore[arg-type]  # bytes fields
    await pipe.execute()


async def fire(redis: aioredis.Redis, event: AlertEvent, channels: list[str]) -> None:
    """An alert onto the outbox, as the commit puts it there."""
    await redis.xadd(keys.outbox(event.symbol), outbox_fields(event, channels))


def alert(
    at_ms: int,
    *,
    rule: str = "flip",
    type_: str = "flip_cross",
    symbol: str = "SPY",
    details: dict | None = None,
    id_: str | None = None,
) -> AlertEvent:
    from gex_alertd.model import iso_utc
    from gex_alertd.rules.engine import alert_id

    as_of = iso_utc(datetime.fromtimestamp(at_ms / 1000, UTC))
    return AlertEvent(
        id=id_ or alert_id(rule, symbol, None, at_ms),
        rule=rule,
        type=type_,
        symbol=symbol,
        expiry=None,
        severity="warning",
        as_of=as_of,
        fired_at=as_of,
        summary=f"{symbol} {type_}",
        details=details if details is not None else {"direction": "up", "flip": 99.0},
    )
