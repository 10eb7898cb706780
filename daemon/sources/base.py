"""What the poller needs from a source of snapshots."""

from __future__ import annotations

from typing import Protocol

import msgspec

from gex_alertd.model import FlowGex


class Fetched(msgspec.Struct, frozen=True):
    # the fetch's own (no other holder): the poller drops its rows in place (model.rowless)
    snapshot: FlowGex
    repeated: bool  # same as_of as the previous fetch of this (symbol, expiry): not new data
    body_bytes: int  # size of the raw JSON body
    latency_s: float


class Source(Protocol):
    async def fetch(self, symbol: str, expiry: str | None = None) -> Fetched:
        """One snapshot; raises a gex_alertd.sources.errors.SourceError subclass on failure."""
        ...

    async def close(self) -> None: ...
