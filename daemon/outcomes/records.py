"""The stored outcome of a live alert: `gex:{SYM}:outcomes`, a hash of alert id -> record.

Same hash slot as the symbol's snapshot stream. Written once with HSETNX, so a second daemon,
a restart or a retried duty run never changes a stored outcome. The record keeps the alert
itself: the outbox is trimmed after delivery, the outcome's alert must survive it.
"""

from __future__ import annotations

import msgspec

from gex_alertd import keys
from gex_alertd.model import AlertEvent
from gex_alertd.outcomes.measure import Outcome


class Record(msgspec.Struct, frozen=True):
    alert: AlertEvent
    outcomes: dict[str, Outcome]
    computed_at: str  # wall clock, UTC ISO: when this daemon computed it (informational)


_decoder = msgspec.json.Decoder(Record)


def outcomes_key(symbol: str) -> str:
    return keys.outcomes(symbol)


def encode(record: Record) -> bytes:
    return msgspec.json.encode(record)


def decode(raw: bytes) -> Record:
    return _decoder.decode(raw)


def marker_line(raw: bytes) -> str | None:
    """`5m +0.12%, 30m -0.40%, close +0.91%`: the plain change of spot at each horizon with an
    `ok` outcome (the live page's alert markers); None when the record does not decode."""
    try:
        rec = decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    parts = [
        f"{label} {o.change_pct:+.2f}%"
        for label, o in rec.outcomes.items()
        if o.status == "ok" and o.change_pct is not None
    ]
    return ", ".join(parts) or None
