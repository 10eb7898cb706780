"""The walls as readable scalar fields of each snapshot entry, read back without the strikes."""

from __future__ import annotations

import redis.asyncio as aioredis

from gex_alertd import keys, store
from gex_alertd.commit import Committer
from gex_alertd.config import RedisConfig
from gex_alertd.connections import entries
from gex_alertd.model import StrikeRow
from gex_alertd.rules.levels import Levels, levels
from tests.rules.factory import snap
from tests.rules.helpers import make_rule

CFG = RedisConfig(url="redis://unused", retention=None)
ROWS = [
    StrikeRow(strike=495.0, call_gex=1e8, put_gex=-9e8, net_gex=-8e8),
    StrikeRow(strike=505.0, call_gex=7e8, put_gex=-1e8, net_gex=6e8),
]


async def test_walls_are_readable_fields_and_read_back_without_strikes(
    redis: aioredis.Redis,
) -> None:
    rule = make_rule(type="flip_cross", name="f")
    c = Committer(redis, [rule], CFG)
    await c.commit(snap(at=0, strikes=ROWS), None)
    await c.commit(snap(at=1, strikes=[]), None)
    (_, first), (_, second) = entries(await redis.xrange(keys.snap("SPY")))
    assert (first[b"call_wall"], first[b"put_wall"]) == (b"505.0", b"495.0")
    assert (second[b"call_wall"], second[b"put_wall"]) == (b"", b"")
    back, _ = store.decode_fields_columns(first, ())
    assert back.strikes == []
    assert levels(back) == Levels(505.0, 495.0)  # from the fields: no strike column decoded
    assert store.decode_fields(first) == snap(at=0, strikes=ROWS)
    assert levels(store.decode_fields(second)) == Levels(None, None)
    del first[b"call_wall"], first[b"put_wall"]  # an entry written before the fields existed
    assert levels(store.decode_fields(first)) == Levels(505.0, 495.0)
