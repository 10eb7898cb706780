"""Encode/decode of snapshots: exact round trips, through a real Redis stream."""

from __future__ import annotations

import hashlib
import json
import math
import random
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import msgspec
import numpy as np
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from gex_alertd import codec, keys, store
from gex_alertd.codec import (
    BlockError,
    decode_arrays,
    decode_columns,
    decode_strikes,
    encode_matrices,
    encode_matrix,
    encode_strikes,
)
from gex_alertd.config import RedisConfig
from gex_alertd.model import (
    STRIKE_FIELDS,
    FlowGex,
    StrikeRow,
    decode_flow_gex,
    rows_matrix,
    strike_matrix,
)
from gex_alertd.rules.duration import Duration
from tests.rules.factory import chain


def make_snapshot(
    n: int, *, seed: int = 1, as_of: datetime | None = None, nulls: bool = True
) -> FlowGex:
    rng = random.Random(seed)
    spot = 600.0 + rng.uniform(-5, 5)
    rows = []
    for i in range(n):
        k = 500.0 + i * 1.0
        cg = round(rng.uniform(0, 3e9), 2)
        pg = -round(rng.uniform(0, 3e9), 2)
        rows.append(
            StrikeRow(
                strike=k,
                call_gex=cg,
                put_gex=pg,
                net_gex=cg + pg,
                call_oi=float(rng.randint(0, 90_000)),
                put_oi=float(rng.randint(0, 90_000)),
                call_volume=float(rng.randint(0, 20_000)),
                put_volume=float(rng.randint(0, 20_000)),
                call_oi_change=None if nulls and i % 7 == 0 else float(rng.randint(-5000, 5000)),
                put_oi_change=None if nulls and i % 5 == 0 else float(rng.randint(-5000, 5000)),
            )
        )
    return FlowGex(
        symbol="SPY",
        as_of=as_of or datetime(2026, 11, 24, 15, 30, 0, 123456, tzinfo=UTC),
        underlying_price=spot,
        live_net_gex=sum(r.net_gex for r in rows if r.net_gex is not None),
        live_net_gex_label="positive",
        live_gamma_flip=None if n == 0 else 598.25,
        gamma_flip_status="available" if n else "no_boundary",
        expiry=None,
        strikes=rows,
        endpoint_version="1.2",
        data_as_of={"node": "2026-11-24T15:30:00Z", "oi_feed": None},
    )


@pytest.mark.parametrize("n", [0, 1, 500])
async def test_round_trip_through_redis(redis, n):
    snap = make_snapshot(n)
    cfg = RedisConfig(url="redis://x", retention=None)
    assert await store.write_snapshot(redis, snap, None, cfg)
    got = [s async for s in store.read_range(redis, "SPY")]
    assert got == [snap]
    assert await store.latest(redis, "SPY") == snap


def test_round_trip_irregular_values():
    # values that are not short decimals must still come back bit for bit
    rows = [
        StrikeRow(strike=0.1 + 0.2, call_gex=1 / 3, put_gex=-2 / 7, net_gex=1.0e300, call_oi=None),
        StrikeRow(strike=601.125, call_gex=-0.0, put_gex=5e-324, net_gex=None, put_oi=3.0),
    ]
    back, extra = decode_strikes(encode_strikes(rows))
    assert back == rows
    assert extra == {}


finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
row_st = st.builds(
    StrikeRow,
    strike=st.floats(min_value=0.5, max_value=1e5, allow_nan=False),
    call_gex=st.none() | finite,
    put_gex=st.none() | finite,
    net_gex=st.none() | finite,
    call_oi=st.none() | st.integers(0, 10**7).map(float),
    put_oi=st.none() | finite,
    call_oi_change=st.none() | st.integers(-(10**6), 10**6).map(float),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(row_st, max_size=40))
def test_block_round_trip_property(rows):
    back, _ = decode_strikes(encode_strikes(rows))
    assert back == rows


def test_net_identity_is_only_used_when_exact():
    rows = [StrikeRow(strike=1.0, call_gex=0.1, put_gex=0.2, net_gex=0.30000000000000004)]
    assert decode_strikes(encode_strikes(rows))[0] == rows
    rows = [StrikeRow(strike=1.0, call_gex=0.1, put_gex=0.2, net_gex=0.3)]  # not c+p in floats
    assert decode_strikes(encode_strikes(rows))[0] == rows


def test_corrupt_block_is_a_clear_error():
    with pytest.raises(BlockError, match="corrupt strike block"):
        decode_columns(b"not zstd at all")


async def test_repeated_as_of_is_stored_once(redis):
    cfg = RedisConfig(url="redis://x", retention=None)
    snap = make_snapshot(3)
    assert await store.write_snapshot(redis, snap, None, cfg) is True
    assert await store.write_snapshot(redis, snap, None, cfg) is False
    older = msgspec.structs.replace(snap, as_of=snap.as_of - timedelta(seconds=15))
    assert await store.write_snapshot(redis, older, None, cfg) is False
    assert await redis.xlen(keys.snap("SPY")) == 1


async def test_entry_is_readable_with_plain_xrange(redis):
    snap = make_snapshot(2)
    await store.write_snapshot(redis, snap, "2026-12-18", RedisConfig(url="redis://x"))
    [(entry_id, fields)] = await redis.xrange("gex:{SPY}:snap:2026-12-18")
    assert entry_id.decode() == f"{snap.as_of_ms}-0"
    assert fields[b"spot"] == repr(snap.underlying_price).encode()
    assert fields[b"flip"] == b"598.25"
    assert fields[b"label"] == b"positive"
    assert fields[b"as_of"] == b"2026-11-24T15:30:00.123456Z"


async def test_time_based_trimming(redis):
    # MINID ~ trims whole listpack nodes, so use small nodes to see it work on a short stream
    await redis.config_set("stream-node-max-entries", 10)
    try:
        cfg = RedisConfig(url="redis://x", retention=Duration(60.0))
        # the cut is Redis's clock minus the retention: the stream spans the last 500 s
        t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=500)
        for i in range(100):
            snap = make_snapshot(1, as_of=t0 + timedelta(seconds=5 * i))
            assert await store.write_snapshot(redis, snap, None, cfg)
        got = [s async for s in store.read_range(redis, "SPY", strikes=False)]
        oldest_kept = got[0].as_of
        newest = got[-1].as_of
        assert newest == t0 + timedelta(seconds=495)
        # approximate trimming keeps at most one node of older entries beyond the window
        assert newest - oldest_kept <= timedelta(seconds=60 + 10 * 5)
        assert len(got) < 100
    finally:
        await redis.config_set("stream-node-max-entries", 100)


async def test_length_based_trimming(redis):
    await redis.config_set("stream-node-max-entries", 10)
    try:
        cfg = RedisConfig(url="redis://x", retention=None, max_len=20)
        t0 = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)
        for i in range(100):
            await store.write_snapshot(
                redis, make_snapshot(1, as_of=t0 + timedelta(seconds=i)), None, cfg
            )
        n = await redis.xlen(keys.snap("SPY"))
        assert 20 <= n <= 30
    finally:
        await redis.config_set("stream-node-max-entries", 100)


async def test_read_range_bounds_and_paging(redis):
    cfg = RedisConfig(url="redis://x", retention=None)
    t0 = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)
    snaps = [make_snapshot(1, as_of=t0 + timedelta(seconds=i)) for i in range(25)]
    for s in snaps:
        await store.write_snapshot(redis, s, None, cfg)
    got = [
        s
        async for s in store.read_range(
            redis, "SPY", start_ms=snaps[5].as_of_ms, end_ms=snaps[19].as_of_ms, count=4
        )
    ]
    assert got == snaps[5:20]


def test_storage_is_compact_against_raw_json():
    snap = make_snapshot(200, nulls=False)
    raw = msgspec.json.encode(snap)
    assert decode_flow_gex(raw) == snap
    stored = sum(len(k) + len(v) for k, v in store.encode_fields(snap).items())
    # random full-precision GEX values are the worst case for compression; still well under half
    assert stored < len(raw) * 0.5, (stored, len(raw))
    # and the JSON really is the wire format
    assert json.loads(raw)["strikes"][0]["strike"] == 500.0


def test_documented_feeds_round_trip_exactly():
    snap = make_snapshot(3)
    stamp = "2026-11-24T15:30:00.123Z"  # the snapshot's own as_of, millisecond form
    feeds: dict[str, str | None] = {name: stamp for name in store.FEEDS}
    feeds["oi_feed"] = "2026-11-24T00:00:00.000Z"
    feeds["macro_feed"] = None
    feeds["node"] = "2026-11-24T15:30:00.123456Z"  # same instant, other text: kept as served
    for data in (feeds, dict(reversed(list(feeds.items())))):
        s = msgspec.structs.replace(snap, data_as_of=data)
        back = store.decode_fields(store.encode_fields(s))
        assert back == s and back.data_as_of is not None
        assert list(back.data_as_of) == list(data)  # the order too


def test_as_of_spellings_depend_on_the_instant_alone():
    # the as_of field and the feeds' stamp are formatted once per instant (store._stamps):
    # the same instant in another zone, naive (UTC), or after many others, spells the same
    snap = make_snapshot(3)
    utc = snap.as_of.astimezone(UTC)
    stamp = "2026-11-24T15:30:00.123Z"
    feeds = {name: stamp for name in store.FEEDS}
    want = None
    others = [utc + timedelta(seconds=i) for i in range(1, 400)]  # past the cache's bound
    for as_of in (utc, utc.astimezone(timezone(timedelta(hours=-5))), utc.replace(tzinfo=None)):
        for other in others:
            store.encode_fields(msgspec.structs.replace(snap, as_of=other))
        fields = store.encode_fields(msgspec.structs.replace(snap, as_of=as_of, data_as_of=feeds))
        got = (fields[b"as_of"], store.decode_fields(fields).data_as_of)
        assert got == (want or got)
        want = got
    assert want == (b"2026-11-24T15:30:00.123456Z", feeds)


@pytest.mark.parametrize("first_fold", [0, 1])
def test_as_of_spellings_of_the_two_instants_of_a_repeated_hour_differ(first_fold: int) -> None:
    # 01:30 on the day New York leaves DST is two instants (fold 0: EDT, fold 1: EST), and
    # Python calls the two datetimes equal with the same hash (one tzinfo: compared naive):
    # neither may be served the other's spelling, whichever was formatted first
    snap = make_snapshot(3)
    ny = ZoneInfo("America/New_York")
    stamps = {0: "2026-11-01T05:30:00.000Z", 1: "2026-11-01T06:30:00.000Z"}
    for fold in (first_fold, 1 - first_fold):
        as_of = datetime(2026, 11, 1, 1, 30, tzinfo=ny, fold=fold)
        feeds = {name: stamps[fold] for name in store.FEEDS}
        fields = store.encode_fields(msgspec.structs.replace(snap, as_of=as_of, data_as_of=feeds))
        assert fields[b"as_of"] == stamps[fold].replace(".000", "").encode()
        assert store.decode_fields(fields).data_as_of == feeds


# --- the matrix path: what every stored snapshot goes through ----------------------------

# sha256 of the uncompressed block (msgpack) of `factory.chain` variants as the row-by-row
# encoder wrote them before the matrix path existed (commit 414e943): the stored format must
# not move. Compressed bytes are not pinned (they belong to the zstd library's version).
GOLDEN = {
    "plain": "840c17ae88246d620a9489566472bb115b47a1be2d6cd0bafcec53408144dbc2",
    "nulls": "027479dcb303af96ba79b1914b2d6415fffd252bf284ef62a0a4caecfb8e4dd8",
    "floats": "cc9abf9177e24a69293582c08cf511469dea3fc205a7ee622e7aa7681d0b06b6",
    "all_null": "e607e015757793b7e80c4debc2080d848d306836a3075843ad9ee5b7f48fe88b",
}


def _variants() -> dict[str, list[StrikeRow]]:
    rows = chain(500.0)
    replace = msgspec.structs.replace
    return {
        "plain": rows,  # decimal GEX (k = 2), net = call + put, integral OI and volumes
        "nulls": [
            replace(r, call_oi_change=None) if i % 37 == 5 else r for i, r in enumerate(rows)
        ],
        "floats": [replace(r, call_gex=(r.call_gex or 0.0) / 3) for r in rows],  # net stored
        "all_null": [replace(r, put_volume=None) for r in rows],
    }


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_block_bytes_are_the_stored_format(name: str) -> None:
    rows = _variants()[name]
    unpack = zstandard.ZstdDecompressor().decompress
    for blob in (
        encode_strikes(rows, {"endpoint_version": "v1"}),
        encode_matrix(rows_matrix(rows), {"endpoint_version": "v1"}),
    ):
        assert hashlib.sha256(unpack(blob)).hexdigest() == GOLDEN[name]


clean_value = st.one_of(
    st.none(),
    finite,
    st.integers(-(10**9), 10**9).map(float),
    st.integers(-(10**12), 10**12).map(lambda x: x / 10 ** (x % 8)),  # decimals, k = 0..7
    st.sampled_from([0.0, -0.0, 5e-324, 1e300, -1e300, 2.0**53, 2.0**53 - 1, 9.3e18, 0.1]),
)
clean_row = st.builds(
    lambda k, vals: StrikeRow(k, *vals),
    st.integers(0, 5000).map(lambda x: x / 2) | finite,
    st.tuples(*[clean_value] * 9),
)
any_row = st.builds(
    lambda k, vals: StrikeRow(k, *vals),
    st.floats(),
    st.tuples(*[clean_value | st.floats()] * 9),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(clean_row, max_size=30))
def test_matrix_path_writes_the_row_path_bytes(rows: list[StrikeRow]) -> None:
    want = codec._encode_rows(rows, {"x": 1})
    assert encode_matrix(rows_matrix(rows), {"x": 1}) == want
    assert encode_strikes(rows, {"x": 1}) == want


@settings(max_examples=200, deadline=None)
@given(st.lists(any_row, min_size=1, max_size=12))
def test_rows_with_nan_or_inf_take_the_row_path(rows: list[StrikeRow]) -> None:
    assert encode_strikes(rows) == codec._encode_rows(rows, None)
    back, _ = decode_strikes(encode_strikes(rows))
    same = [  # NaN != NaN: compare bit patterns
        [x if x is None else math.copysign(1, x) if math.isnan(x) else x for x in t]
        for t in map(msgspec.structs.astuple, back)
    ]
    assert same == [
        [x if x is None else math.copysign(1, x) if math.isnan(x) else x for x in t]
        for t in map(msgspec.structs.astuple, rows)
    ]


@pytest.mark.parametrize("n", [0, 1, 200])
def test_a_decoded_snapshot_is_stored_from_its_matrix_to_the_same_entry(n: int) -> None:
    snap = decode_flow_gex(msgspec.json.encode(make_snapshot(n)))
    assert strike_matrix(snap) is not None
    again = msgspec.structs.replace(snap)  # the same snapshot without the matrix: the rows
    assert strike_matrix(again) is None
    assert store.encode_fields(snap) == store.encode_fields(again)
    assert store.decode_fields(store.encode_fields(snap)) == snap


async def test_latest_columns_is_the_top_snapshot_detached(redis) -> None:
    from gex_alertd.rules.columns import columns, detached

    cfg = RedisConfig(url="redis://x", retention=None)
    assert await store.latest_columns(redis, "SPY") is None
    t0 = datetime(2026, 11, 24, 15, 30, tzinfo=UTC)
    snaps = [make_snapshot(40, seed=i, as_of=t0 + timedelta(seconds=i)) for i in range(3)]
    for s in snaps:
        assert await store.write_snapshot(redis, s, None, cfg)
    got = await store.latest_columns(redis, "SPY")
    want = detached(snaps[-1])
    assert got == want and got is not None and got.strikes == []
    assert np.array_equal(columns(got).m, columns(want).m, equal_nan=True)


def _edge_blocks() -> dict[str, list[StrikeRow]]:
    """Rows that take each branch of encode_matrix's scale search and net identity."""
    n = 40
    base = [StrikeRow(500.0 + i, 1.0 + i, -2.0 - i, -1.0, 10.0, 20.0) for i in range(n)]
    replace = msgspec.structs.replace
    late_float = [  # the probe (first 16 values) fits k = 2; value 30 fits no k
        replace(r, call_oi=round(0.01 * (i + 1), 2) if i != 30 else 1 / 3)
        for i, r in enumerate(base)
    ]
    return {
        "diff": [replace(r, net_gex=(1.0 + i) - (-2.0 - i)) for i, r in enumerate(base)],
        "sum": [replace(r, net_gex=(1.0 + i) + (-2.0 - i)) for i, r in enumerate(base)],
        "late_float": late_float,
        "late_k": [replace(r, put_oi=0.5 if i == 35 else 7.0) for i, r in enumerate(base)],
        # integral, yet past 2**53: no k (the int64 lanes could not give the float back)
        "past_limit": [replace(r, call_volume=2.0**53 + 2 * i) for i, r in enumerate(base)],
        # k = 3 fits, its scaled values just under 2**53; one more digit would not
        "near_limit": [replace(r, put_volume=(2**53 - 1 - i) / 1000) for i, r in enumerate(base)],
        "nulls_in_decimals": [
            replace(r, call_oi_change=None if i % 9 == 0 else i / 4) for i, r in enumerate(base)
        ],
    }


@pytest.mark.parametrize("name", sorted(_edge_blocks()))
def test_matrix_path_writes_the_row_path_bytes_at_each_branch(name: str) -> None:
    rows = _edge_blocks()[name]
    want = codec._encode_rows(rows, None)
    assert encode_matrix(rows_matrix(rows)) == want
    assert decode_strikes(want)[0] == rows


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(clean_row, max_size=6), max_size=7))
def test_blocks_encoded_together_are_the_blocks_encoded_one_by_one(
    blocks: list[list[StrikeRow]],
) -> None:
    # several blocks of one strike count share every numpy call: none may leak into another
    items = [(rows_matrix(rows), {"i": i} if i % 2 else None) for i, rows in enumerate(blocks)]
    want = [codec._encode_rows(rows, extra) for rows, (_, extra) in zip(blocks, items, strict=True)]
    assert encode_matrices(items) == want
    assert [encode_matrix(m, extra) for m, extra in items] == want


def test_many_large_blocks_are_encoded_a_few_at_a_time_to_the_same_bytes() -> None:
    # 20 blocks of 200 strikes: more than one stack's worth (codec._STACK_BYTES), mixed with
    # another strike count; nulls and k vary with the seed
    snaps = [make_snapshot(200 if i % 7 else 150, seed=i, nulls=i % 2 == 0) for i in range(20)]
    items = [(rows_matrix(s.strikes), {"i": i}) for i, s in enumerate(snaps)]
    assert 8 * 10 * 200 * 20 > codec._STACK_BYTES
    assert encode_matrices(items) == [encode_matrix(m, extra) for m, extra in items]
    assert encode_matrices(items) == [
        codec._encode_rows(s.strikes, {"i": i}) for i, s in enumerate(snaps)
    ]


# --- zstd: level 3 with smaller tables ------------------------------------------------------


def _level_3(raw: bytes) -> bytes:
    return zstandard.ZstdCompressor(level=codec.ZSTD_LEVEL).compress(raw)


def test_blocks_are_level_3_in_all_but_the_table_sizes() -> None:
    # a payload for which level 3's own tables are no larger is compressed exactly as level 3
    # does it; a 200-strike one (larger tables at level 3) differs, with level 3's window and
    # within 0.5% of its size; either way it decompresses to the payload
    unpack = zstandard.ZstdDecompressor().decompress
    small = unpack(encode_strikes(make_snapshot(12).strikes))
    assert codec._compressor(len(small)).compress(small) == _level_3(small)
    ours = theirs = 0
    for seed in range(6):
        rows = make_snapshot(200, seed=seed, nulls=seed % 2 == 0).strikes
        blob = encode_matrix(rows_matrix(rows), {"endpoint_version": "v1"})
        raw = unpack(blob)
        level = _level_3(raw)
        frame, level_frame = (
            zstandard.get_frame_parameters(blob),
            zstandard.get_frame_parameters(level),
        )
        assert (frame.window_size, frame.content_size) == (level_frame.window_size, len(raw))
        ours, theirs = ours + len(blob), theirs + len(level)
    assert ours <= theirs * 1.005, (ours, theirs)


def test_a_compressor_is_kept_per_power_of_two_of_the_payload() -> None:
    # level 3's parameters depend on the size only through its power of two (table classes at
    # 16, 128 and 256 KB; windows at a power of two): one compressor serves a whole class
    assert codec._compressor(14_600) is codec._compressor(16_384)
    assert codec._compressor(16_384) is not codec._compressor(16_385)
    for size in (16_385, 200_000):
        raw = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
        blob = codec._compressor(size).compress(raw)
        frame, level = (
            zstandard.get_frame_parameters(blob),
            zstandard.get_frame_parameters(_level_3(raw)),
        )
        assert frame.window_size == level.window_size
        assert zstandard.ZstdDecompressor().decompress(blob) == raw


def test_a_block_after_a_larger_one_is_its_own_payload_alone() -> None:
    # the payload is packed into a buffer kept between blocks: nothing of a larger block
    # before it may remain at its end
    encode_strikes(make_snapshot(400).strikes, {"pad": "x" * 5000})
    blob = encode_strikes(_variants()["plain"], {"endpoint_version": "v1"})
    assert (
        hashlib.sha256(zstandard.ZstdDecompressor().decompress(blob)).hexdigest()
        == (GOLDEN["plain"])
    )


def test_blocks_encoded_and_decoded_in_several_threads_at_once_are_each_their_own() -> None:
    # zstd runs without the GIL: a context (or the payload buffer) shared by threads at once
    # fails or mixes blocks up (the live page decodes history in worker threads); large
    # blocks keep several threads inside zstd together
    from concurrent.futures import ThreadPoolExecutor

    items = [(rows_matrix(make_snapshot(2000, seed=i).strikes), {"i": i}) for i in range(16)]
    blocks = [encode_matrix(m, extra) for m, extra in items]
    names = ("strike", "call_oi", "put_gex")
    columns = [decode_arrays(blob, names).cols for blob in blocks]
    with ThreadPoolExecutor(4) as pool:
        for _ in range(6):
            assert list(pool.map(lambda it: encode_matrix(*it), items)) == blocks
            for got, want in zip(
                pool.map(lambda blob: decode_arrays(blob, names).cols, blocks), columns, strict=True
            ):
                assert all(np.array_equal(got[n], want[n]) for n in names)


def test_a_huge_block_is_not_kept_by_its_thread() -> None:
    # a body of many rows (up to source.max_body_bytes: ~80,000 strikes) is encoded once: its
    # payload buffer (msgpack truncates it without giving the memory back) and its power of
    # two's zstd context are let go, not held by the thread for good; the block is as before
    import sys

    huge = rows_matrix(make_snapshot(8000).strikes)
    blob = encode_matrix(huge)
    assert sys.getsizeof(codec._local.buf) < codec._KEPT_MAX
    assert all(1 << key <= codec._KEPT_MAX for key in codec._local.cctxs)
    raw = zstandard.ZstdDecompressor().decompress(blob)
    assert len(raw) > codec._KEPT_MAX
    assert blob == codec._compressor(len(raw)).compress(raw)
    names = ("strike", "call_oi", "put_gex")
    got = decode_arrays(blob, names).cols
    assert all(np.array_equal(got[n], huge[STRIKE_FIELDS.index(n)], equal_nan=True) for n in names)
