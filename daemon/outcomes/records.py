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
