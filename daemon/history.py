"""Snapshot history for a replay: API responses from a JSONL file, or the stored streams read
in as_of order. A bad line or entry is reported to the caller and skipped, never fatal."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import IO, Any

import redis.asyncio as aioredis

from gex_alertd import keys, store
from gex_alertd.connections import entries
from gex_alertd.model import FlowGex, PayloadError, decode_flow_gex
from gex_alertd.replayer import StreamKey
from gex_alertd.rules.columns import FIELDS, StrikeColumns, from_block

_DECODE_SLICE = 64


def iter_jsonl(fh: IO[bytes], on_error: Any, on_bytes: Any = None) -> Iterator[FlowGex]:
    """One API response per line; a bad line is reported (with its number) and skipped."""
    for lineno, line in enumerate(fh, 1):
        if on_bytes is not None:
            on_bytes(len(line))
        if not line.strip():
            continue
        try:
            yield decode_flow_gex(line)
        except PayloadError as exc:
            on_error(lineno, str(exc))


async def iter_streams(
    redis: aioredis.Redis,
    targets: list[StreamKey],
    start_ms: int | None,
    end_ms: int | None,
    on_error: Callable[[str, str], None],
    page: int = 2000,
) -> AsyncIterator[tuple[FlowGex, str | None]]:
    """Stored snapshots in as_of order per stream; an undecodable entry is reported (with its
    key and entry ID) and skipped, the rest of the stream still replays."""
    async for snap, expiry, _ in iter_stream_views(
        redis, targets, start_ms, end_ms, on_error, page
    ):
        yield snap, expiry


async def iter_stream_views(
    redis: aioredis.Redis,
    targets: list[StreamKey],
    start_ms: int | None,
    end_ms: int | None,
    on_error: Callable[[str, str], None],
    page: int = 2000,
    columns_only: bool = False,
) -> AsyncIterator[tuple[FlowGex, str | None, StrikeColumns | None]]:
    """As `iter_streams`; with `columns_only` each snapshot comes without rows and with the
    strike columns the rules read (`rules.columns.FIELDS`), decoded straight from the block:
    decoding 200 rows was most of a replay's time."""
    for symbol, expiry in targets:
        key = keys.snap(symbol, expiry)
        lo = "-" if start_ms is None else f"{start_ms}-0"
        hi = "+" if end_ms is None else f"{end_ms}-18446744073709551615"
        while True:
            batch = entries(await redis.xrange(key, min=lo, max=hi, count=page))
            if columns_only:
                # blocks decoded together, a slice of the page at a time (small enough for the
                # CPU caches, big enough that numpy's per-call cost is shared)
                for at in range(0, len(batch), _DECODE_SLICE):
                    part = batch[at : at + _DECODE_SLICE]
                    decoded = store.decode_fields_columns_many([f for _, f in part], FIELDS)
                    for (entry_id, _), item in zip(part, decoded, strict=True):
                        if isinstance(item, store.StoredEntryError):
                            on_error(f"{key} {entry_id.decode()}", str(item))
                            continue
                        yield item[0], expiry, from_block(item[1])
            else:
                for entry_id, fields in batch:
                    try:
                        snap = store.decode_fields(fields)
                    except store.StoredEntryError as exc:
                        on_error(f"{key} {entry_id.decode()}", str(exc))
                        continue
                    yield snap, expiry, None
            if len(batch) < page:
                break
            lo = "(" + batch[-1][0].decode()
