"""Spot paths from the snapshot streams, without decoding a single strike block.

The scalars of an entry are plain text (design.md "Redis layout"), so a read-only script
projects each entry to (as_of ms, spot, net) inside Redis: only those three values cross the
wire, not the ~kilobytes of compressed strikes per snapshot. The entry ID is the as_of in ms.
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

import numpy as np
import redis.asyncio as aioredis

from gex_alertd import keys, packed

# Small pages: the script's cost per entry grows with the page (every entry of a page, strike
# block included, becomes a Lua string held until the script ends): 10,000 entries took 0.13 s
# in pages of 100-250 and 0.9 s in pages of 2,000 (bench/bench_outcomes.py, 2 cores)
PAGE = 200

# KEYS[1] stream; ARGV: min id, max id, count. Returns {ms, spot, net, ms, spot, net, ...}.
# The daemon writes as_of, spot, net first (store.encode_fields); any other order is searched.
_PROJECT = """
local r = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[2], 'COUNT', ARGV[3])
local out = {}
for i = 1, #r do
  local id, f = r[i][1], r[i][2]
  local spot, net = '', ''
  if f[3] == 'spot' and f[5] == 'net' then
    spot, net = f[4], f[6]
  else
    for j = 1, #f, 2 do
      local k = f[j]
      if k == 'spot' then spot = f[j + 1] elseif k == 'net' then net = f[j + 1] end
    end
  end
  out[#out + 1] = string.sub(id, 1, string.find(id, '-', 1, true) - 1)
  out[#out + 1] = spot
  out[#out + 1] = net
end
return out
"""


class SpotPath(NamedTuple):
    """One stream's snapshots in as_of order: times (ms, int64), spot and net GEX (float64)."""

    t: np.ndarray
    spot: np.ndarray
    net: np.ndarray

    @classmethod
    def of(cls, t: list[int], spot: list[float], net: list[float] | None = None) -> SpotPath:
        n = np.zeros(len(t)) if net is None else np.asarray(net, dtype=np.float64)
        return cls(np.asarray(t, dtype=np.int64), np.asarray(spot, dtype=np.float64), n)

    @classmethod
    def empty(cls) -> SpotPath:
        return cls.of([], [])

    def __len__(self) -> int:
        return len(self.t)


def _floats(raw: list[bytes]) -> np.ndarray:
    try:
        return np.array(raw, dtype="S").astype(np.float64)
    except ValueError:  # an empty or foreign value: NaN for that entry, the rest stays usable
        return np.array([_float_or_nan(x) for x in raw], dtype=np.float64)


def _float_or_nan(x: bytes) -> float:
    try:
        return float(x)
    except ValueError:
        return float("nan")


async def read_path(
    redis: aioredis.Redis,
    symbol: str,
    expiry: str | None = None,
    start_ms: int | None = None,
    end_ms: int | None = None,
) -> SpotPath:
    """The stream's (t, spot, net) between start_ms and end_ms inclusive, paged. Entries whose
    spot is unreadable are dropped (a stored spot is always positive and finite)."""
    script = redis.register_script(_PROJECT)
    key = keys.snap(symbol, expiry)
    lo = "-" if start_ms is None else f"{start_ms}-0"
    hi = "+" if end_ms is None else f"{end_ms}-18446744073709551615"
    ts: list[np.ndarray] = []
    spots: list[np.ndarray] = []
    nets: list[np.ndarray] = []
    while True:
        flat = await script(keys=[key], args=[lo, hi, PAGE])
        n = len(flat) // 3
        if n:
            t = np.array(flat[0::3], dtype="S").astype(np.int64)
            ts.append(t)
            spots.append(_floats(flat[1::3]))
            nets.append(_floats(flat[2::3]))
        if n < PAGE:
            break
        lo = f"({int(ts[-1][-1])}-0"
    if not ts:
        return SpotPath.empty()
    path = SpotPath(np.concatenate(ts), np.concatenate(spots), np.concatenate(nets))
    ok = np.isfinite(path.spot) & (path.spot > 0)
    if not ok.all():
        path = SpotPath(path.t[ok], path.spot[ok], path.net[ok])
    return path


# KEYS[1] stream. Returns its last-generated-id, false when there is no such stream. XINFO
# STREAM's reply holds the first and last entries too (two whole snapshots, strike blocks
# included): read here, only the id crosses the wire (per symbol with pending alerts, every
# run of the outcome duty)
_LAST_ID = """
local ok, info = pcall(redis.call, 'XINFO', 'STREAM', KEYS[1])
if not ok then return false end
for i = 1, #info, 2 do
  if info[i] == 'last-generated-id' then return info[i + 1] end
end
return false
"""


_LAST_ID_SHA = hashlib.sha1(_LAST_ID.encode()).hexdigest()


async def last_ms(redis: aioredis.Redis, symbol: str, expiry: str | None = None) -> int | None:
    """The as_of (ms) of the stream's newest entry: how far the stored data has reached."""
    return ms_of_last_id(await redis.register_script(_LAST_ID)(keys=[keys.snap(symbol, expiry)]))


def last_id_command(symbol: str, expiry: str | None = None) -> bytes:
    """`last_ms`'s script call packed (packed.exchange; its reply goes to `ms_of_last_id`).
    A NOSCRIPT reply (a fresh or restarted Redis) asks for `load_last_id` first."""
    return packed.pack("EVALSHA", _LAST_ID_SHA, 1, keys.snap(symbol, expiry))


async def load_last_id(redis: aioredis.Redis) -> None:
    await redis.script_load(_LAST_ID)


def ms_of_last_id(last: object) -> int | None:
    if not last:  # no such stream (yet)
        return None
    text = last.decode() if isinstance(last, bytes) else str(last)
    ms = int(text.split("-", 1)[0])
    return ms or None
