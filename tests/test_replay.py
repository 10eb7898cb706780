from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import redis.asyncio as aioredis
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gex_alertd import keys, store
from gex_alertd.cli import main
from gex_alertd.commit import Committer
from gex_alertd.config import RedisConfig
from gex_alertd.connections import entries
from gex_alertd.model import FlowGex, decode_alert
from gex_alertd.replay import parse_targets, parse_time
from gex_alertd.replayer import Replayer
from tests.rules.factory import row, snap
from tests.rules.helpers import make_rule

CONFIG = """
redis: {{url: "{url}", retention: null}}
watch: {{symbols: [SPY, QQQ]}}
channels: {{tty: {{type: console}}}}
rules:
  - {{name: flip, type: flip_cross, symbols: "*", direction: any, band_pct: 0.1, channels: [tty]}}
  - {{name: sign, type: net_gex_sign, confirm: 2, channels: [tty]}}
  - {{name: oi, type: oi_change, min_contracts: 500, within_pct: 5, channels: [tty]}}
  - {{name: level, type: threshold, field: underlying_price, above: 505, channels: [tty]}}
"""


def write_config(tmp_path: Path, url: str) -> Path:
    p = tmp_path / "config.yaml"
    p.write_text(CONFIG.format(url=url))
    return p


def rules_from(path: Path) -> list:
    from gex_alertd import config

    return list(config.load(path).rules)


def scripted(symbol: str = "SPY") -> list[FlowGex]:
    """A flip cross up at 1, a sign change confirmed at 3, an OI jump at 4, a level at 5."""
    base = [row(500.0, 1000.0, 1000.0), row(501.0, 1000.0, 1000.0)]
    jump = [row(500.0, 1000.0, 1000.0), row(501.0, 2000.0, 1000.0)]
    pts = [  # spot, flip, net, rows
        (499.0, 500.0, 1e9, base),
        (501.0, 500.0, 1e9, base),
        (501.0, 500.0, -1e9, base),
        (501.0, 500.0, -1e9, base),
        (501.0, 500.0, -1e9, jump),
        (506.0, 500.0, -1e9, jump),
    ]
    return [
        snap(symbol=symbol, at=i, spot=s, flip=f, net=n, strikes=r)
        for i, (s, f, n, r) in enumerate(pts)
    ]


def test_jsonl_replay_reports_bad_lines_and_writes_alerts(tmp_path: Path, redis_url: str) -> None:
    lines = [msgspec.json.encode(s).decode() for s in scripted()]
    lines.insert(2, '{"symbol": "SPY", "as_of": "nope"}')
    lines.insert(4, "not json at all")
    lines.append(lines[-1])  # a repeat of the same as_of
    # paths longer than a terminal line: each file:line and path is still printed whole
    deep = tmp_path / ("d" * 90)
    deep.mkdir()
    (deep / "in.jsonl").write_text("\n".join(lines) + "\n\n")
    cfg = write_config(tmp_path, redis_url)
    out = deep / "alerts.jsonl"
    res = CliRunner().invoke(
        main, ["replay", "-c", str(cfg), "--input", str(deep / "in.jsonl"), "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    assert f"{deep}/in.jsonl:3" in res.output and f"{deep}/in.jsonl:5" in res.output
    assert f"alerts written to {out}" in res.output
    events = [decode_alert(line) for line in out.read_text().splitlines()]
    assert [(e.rule, e.as_of[-13:]) for e in events] == [
        ("flip", "14:00:15.000Z"),
        ("sign", "14:00:45.000Z"),
        ("oi", "14:01:00.000Z"),
        ("level", "14:01:15.000Z"),
    ]
    assert (
        "Replay summary" in res.output
        and "2 bad inputs" in res.output
        and "1 repeats" in res.output
    )


async def test_stream_replay_equals_live_and_touches_nothing(
    tmp_path: Path, redis: aioredis.Redis, redis_url: str
) -> None:
    cfg = write_config(tmp_path, redis_url)
    committer = Committer(redis, rules_from(cfg), RedisConfig(url=redis_url, retention=None))
    live = []
    for sym in ("SPY", "QQQ"):
        for s in scripted(sym):
            live += (await committer.commit(s, None)).alerts
    assert len(live) == 8
    before = {k: await redis.dump(k) for k in await redis.keys("*")}
    out = tmp_path / "alerts.jsonl"
    res = await asyncio.to_thread(
        CliRunner().invoke, main, ["replay", "-c", str(cfg), "--out", str(out), "--no-progress"]
    )
    assert res.exit_code == 0, res.output
    replayed = [decode_alert(line) for line in out.read_text().splitlines()]
    assert sorted(msgspec.json.encode(e) for e in replayed) == sorted(
        msgspec.json.encode(e) for e in live
    )
    assert {k: await redis.dump(k) for k in await redis.keys("*")} == before

    # a window: only QQQ, from its second snapshot on (fresh state there, so the cross is lost)
    frm = scripted("QQQ")[1].as_of.isoformat()
    res = await asyncio.to_thread(
        CliRunner().invoke, main,
        ["replay", "-c", str(cfg), "--symbols", "QQQ", "--from", frm, "--out", str(out)],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert [decode_alert(x).rule for x in out.read_text().splitlines()] == ["sign", "oi", "level"]


async def test_send_enqueues_once(tmp_path: Path, redis: aioredis.Redis, redis_url: str) -> None:
    cfg = write_config(tmp_path, redis_url)
    for s in scripted():
        await store.write_snapshot(redis, s, None, RedisConfig(retention=None))
    args = ["replay", "-c", str(cfg), "--symbols", "SPY", "--send"]
    res = await asyncio.to_thread(CliRunner().invoke, main, args)
    assert res.exit_code == 0, res.output
    assert "enqueued 4 alert(s)" in res.output
    assert "outboxes (gex:{<SYMBOL>}:alerts)" in res.output
    assert await redis.xlen(keys.outbox("SPY")) == 4
    res = await asyncio.to_thread(CliRunner().invoke, main, args)
    assert "enqueued 0 alert(s)" in res.output and await redis.xlen(keys.outbox("SPY")) == 4


def test_replay_option_errors(tmp_path: Path, redis_url: str) -> None:
    cfg = write_config(tmp_path, redis_url)
    res = CliRunner().invoke(main, ["replay", "-c", str(cfg), "--from", "yesterday-ish"])
    assert res.exit_code == 64 and "expected an ISO time" in res.output  # EX_USAGE
    res = CliRunner().invoke(main, ["replay", "-c", str(cfg), "--symbols", "SPX:15-05-2026"])
    assert res.exit_code == 64 and "SYMBOL:YYYY-MM-DD" in res.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules: [{name: x, type: flip_cross, direction: sideways}]\n")
    res = CliRunner().invoke(main, ["replay", "-c", str(bad)])
    assert res.exit_code == 2 and "rules[0].direction" in res.output


def test_parse_helpers() -> None:
    assert parse_targets(("spy,QQQ", "SPX:2026-05-15")) == [
        ("SPY", None),
        ("QQQ", None),
        ("SPX", "2026-05-15"),
    ]
    from datetime import UTC, datetime

    now = datetime(2026, 5, 11, 14, 0, tzinfo=UTC)
    assert parse_time("2h", now) == parse_time("2026-05-11T12:00:00Z")
    assert parse_time("2026-05-11T12:00:00") == parse_time("2026-05-11T08:00:00-04:00")


def test_a_date_as_the_end_takes_in_that_whole_day() -> None:
    """`--to` is inclusive: `--from 2026-05-11 --to 2026-05-11` is that day, not its first
    instant (a bare date ended the window at 00:00 UTC, so the day's snapshots were left out)."""
    day = parse_time("2026-05-11")
    assert parse_time("2026-05-11", end=True) == parse_time("2026-05-12") - 1
    assert parse_time("2026-05-11T16:00:00Z", end=True) == day + 16 * 3600 * 1000
    assert parse_time("2h", datetime(2026, 5, 11, 14, 0, tzinfo=UTC), end=True) == parse_time(
        "2026-05-11T12:00:00Z"
    )


async def test_replay_to_a_date_replays_that_day(
    tmp_path: Path, redis: aioredis.Redis, redis_url: str
) -> None:
    """The CLI: the same day as --from and --to replays that day's snapshots (all six of
    `scripted()`, 2026-05-11 from 14:00 UTC), and its alerts."""
    cfg = write_config(tmp_path, redis_url)
    for s in scripted():
        await store.write_snapshot(redis, s, None, RedisConfig(retention=None))
    args = ["replay", "-c", str(cfg), "--symbols", "SPY", "--from", "2026-05-11"]
    res = await asyncio.to_thread(CliRunner().invoke, main, [*args, "--to", "2026-05-11"])
    assert res.exit_code == 0, res.output
    assert "6 snapshots" in res.output, res.output


# --- property tests ---------------------------------------------------------------------------

STRIKES = (495.0, 500.0, 505.0)


@st.composite
def histories(draw: st.DrawFn) -> list[FlowGex]:
    n = draw(st.integers(1, 25))
    t, out = 0, []
    for _ in range(n):
        t += draw(st.integers(1, 400))  # seconds: crosses cooldowns of 10m both ways
        spot = draw(st.sampled_from([498.0, 499.5, 500.0, 500.4, 502.0, 506.0]))
        flip = draw(st.sampled_from([None, 500.0, 500.0, 501.0]))
        status = draw(st.sampled_from(["available", "available", "no_boundary", None]))
        net = draw(st.sampled_from([-2e9, -1e8, 0.0, 1e8, 2e9]))
        rows = [
            row(k, draw(st.sampled_from([1000.0, 1200.0, 2000.0, None])), 1000.0)
            for k in STRIKES
            if draw(st.booleans()) or k == 500.0
        ]
        out.append(snap(at=t, spot=spot, flip=flip, status=status, net=net, strikes=rows))
    return out


PROP_RULES = [
    make_rule(type="flip_cross", name="flip", band_pct=0.05, cooldown="10m"),
    make_rule(type="net_gex_sign", name="sign", min_abs=5e8),
    make_rule(type="oi_change", name="oi", min_contracts=500, side="call"),
    make_rule(type="threshold", name="lvl", field="underlying_price", above=501),
    make_rule(type="threshold", name="dist", field="flip_distance_pct", below=-0.2),
]


def replay_ids(history: list[FlowGex]) -> list[tuple[int, str]]:
    r = Replayer(PROP_RULES)
    return [(i, em.event.id) for i, s in enumerate(history) for em in r.feed(s, None)]


@settings(max_examples=60, deadline=None)
@given(histories())
def test_replay_is_deterministic(history: list[FlowGex]) -> None:
    assert replay_ids(history) == replay_ids(list(history))


def _side(s: FlowGex, band: float) -> int:
    if s.flip is None:
        return 0
    d = 100 * (s.underlying_price - s.flip) / s.underlying_price
    return 0 if abs(d) <= band else (1 if d > 0 else -1)


@settings(max_examples=80, deadline=None)
@given(histories())
def test_no_alert_without_a_change(history: list[FlowGex]) -> None:
    r = Replayer(PROP_RULES)
    for i, s in enumerate(history):
        for em in r.feed(s, None):
            ev, earlier = em.event, history[:i]
            assert i > 0
            if ev.rule == "flip":
                sides = [_side(x, 0.05) for x in earlier if _side(x, 0.05)]
                assert _side(s, 0.05) and sides and sides[-1] == -_side(s, 0.05)
            elif ev.rule == "sign":
                signs = [x.live_net_gex > 0 for x in earlier if abs(x.live_net_gex) > 5e8]
                assert abs(s.live_net_gex) > 5e8 and signs and signs[-1] != (s.live_net_gex > 0)
            elif ev.rule == "oi":
                prev = {x.strike: x.call_oi for x in history[i - 1].strikes}
                now = {x.strike: x.call_oi for x in s.strikes}
                for hit in ev.details["strikes"]:
                    k = hit["strike"]
                    assert prev[k] == hit["before"] and now[k] == hit["after"]
                    assert abs(hit["after"] - hit["before"]) >= 500
            elif ev.rule == "lvl":
                decisive = [x.underlying_price for x in earlier if x.underlying_price != 501]
                assert s.underlying_price > 501 and decisive and decisive[-1] < 501
            elif ev.rule == "dist":
                assert s.flip is not None
                assert 100 * (s.underlying_price - s.flip) / s.underlying_price < -0.2


@settings(
    max_examples=25,
    deadline=None,
    # the profile in tests/conftest.py suppresses too_slow; a list here replaces that one
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(histories())
def test_replay_equals_live_commit(redis_url: str, history: list[FlowGex]) -> None:
    async def live() -> tuple[list[str], list[str]]:
        client = aioredis.Redis.from_url(redis_url)
        try:
            await client.flushall()
            c = Committer(client, PROP_RULES, RedisConfig(url=redis_url, retention=None))
            committed = []
            for i, s in enumerate(history):
                committed += [e.id for e in (await c.commit(s, None)).alerts]
                if i % 7 == 3:  # a restart: a new process with nothing in memory
                    c = Committer(client, PROP_RULES, RedisConfig(url=redis_url, retention=None))
            outbox = [
                json.loads(f[b"event"])["id"]
                for _i, f in entries(await client.xrange(keys.outbox("SPY")))
            ]
            assert outbox == committed
            stored = [x async for x in store.read_range(client, "SPY")]
            assert stored == history
            return committed, [em.event.id for x in stored for em in replayer.feed(x, None)]
        finally:
            await client.aclose()

    replayer = Replayer(PROP_RULES)
    committed, replayed = asyncio.run(live())
    assert committed == replayed == [i for _, i in replay_ids(history)]


async def test_parallel_replay_matches_serial(
    tmp_path: Path, redis: aioredis.Redis, redis_url: str
) -> None:
    cfg = write_config(tmp_path, redis_url)
    for sym in ("SPY", "QQQ", "IWM"):
        for s in scripted(sym):
            await store.write_snapshot(redis, s, None, RedisConfig(retention=None))
    outs = []
    for jobs in ("1", "2"):
        out = tmp_path / f"alerts-{jobs}.jsonl"
        args = [
            "replay",
            "-c",
            str(cfg),
            "--symbols",
            "SPY,QQQ,IWM",
            "--jobs",
            jobs,
            "--out",
            str(out),
        ]
        res = await asyncio.to_thread(CliRunner().invoke, main, args)
        assert res.exit_code == 0, res.output
        assert "18 snapshots" in res.output
        outs.append(out.read_bytes())
    assert outs[0] == outs[1] and outs[0].count(b"\n") == 12


async def test_corrupt_stored_entry_is_skipped(
    tmp_path: Path, redis: aioredis.Redis, redis_url: str
) -> None:
    cfg = write_config(tmp_path, redis_url)
    snaps = scripted()
    for s in snaps[:3]:
        await store.write_snapshot(redis, s, None, RedisConfig(retention=None))
    await redis.xadd(
        keys.snap("SPY"), {"symbol": "SPY", "strikes": b"garbage"}, id=f"{snaps[3].as_of_ms}-0"
    )
    for s in snaps[4:]:
        await store.write_snapshot(redis, s, None, RedisConfig(retention=None))
    out = tmp_path / "alerts.jsonl"
    args = ["replay", "-c", str(cfg), "--symbols", "SPY", "--out", str(out)]
    res = await asyncio.to_thread(CliRunner(env={"COLUMNS": "200"}).invoke, main, args)
    assert res.exit_code == 0, res.output
    assert f"gex:{{SPY}}:snap {snaps[3].as_of_ms}-0" in res.output and "1 bad inputs" in res.output
    assert [decode_alert(x).rule for x in out.read_text().splitlines()] == [
        "flip",
        "sign",
        "oi",
        "level",
    ]


# --- the column path (rows never decoded) against full rows -----------------------------------


def drifting(symbol: str, n: int, seed: int) -> list[FlowGex]:
    """A session-like history: OI drifts at a few strikes, nulls come and go, the strike grid
    shifts now and then, days roll over (so `day` baselines reset)."""
    import random
    from datetime import timedelta

    from tests.rules.factory import T0

    rng = random.Random(seed)
    grid = [480.0 + 2.5 * i for i in range(16)]
    call = [float(rng.randrange(0, 5000)) for _ in grid]
    put = [float(rng.randrange(0, 5000)) for _ in grid]
    settled = list(zip(call, put, strict=True))
    out, t, spot = [], T0, 500.0
    for _ in range(n):
        t += timedelta(minutes=rng.choice([1, 1, 5, 600]))
        if rng.random() < 0.05:
            settled = list(zip(call, put, strict=True))
        for _ in range(3):
            j = rng.randrange(len(grid))
            call[j] = max(0.0, call[j] + rng.choice([-800.0, -20.0, 0.0, 35.0, 1500.0]))
            put[j] = max(0.0, put[j] + rng.choice([-900.0, -10.0, 0.0, 40.0, 2500.0]))
        spot = round(spot + rng.uniform(-2, 2), 2)
        shift = rng.random() < 0.1  # the served strike set moves with spot
        rows = [
            row(
                k,
                None if rng.random() < 0.03 else call[j],
                put[j],
                call_oi_change=None if rng.random() < 0.05 else call[j] - settled[j][0],
                put_oi_change=put[j] - settled[j][1],
                call_gex=round(call[j] * 12.5, 2),
                put_gex=-round(put[j] * 12.5, 2),
                net_gex=round(call[j] * 12.5, 2) - round(put[j] * 12.5, 2),
            )
            for j, k in enumerate(grid)
            if not (shift and j in (0, len(grid) - 1))
        ]
        flip = round(spot + rng.uniform(-3, 3), 2)
        net = rng.choice([-2e9, 2e9])
        out.append(snap(symbol=symbol, at=t, spot=spot, flip=flip, net=net, strikes=rows))
    return out


COLUMN_RULES = [
    *PROP_RULES,
    make_rule(type="oi_change", name="oi-poll", min_contracts=500, within_pct=2),
    make_rule(type="oi_change", name="oi-put", side="put", min_pct=30),
    make_rule(type="oi_change", name="oi-day", basis="day", min_contracts=1000, min_pct=20),
]


async def test_column_path_equals_full_rows(redis: aioredis.Redis, redis_url: str) -> None:
    from gex_alertd.replay_streams import replay_streams

    targets: list[tuple[str, str | None]] = [("SPY", None), ("QQQ", None)]
    for seed, (sym, _) in enumerate(targets):
        for s in drifting(sym, 400, seed):
            await store.write_snapshot(redis, s, None, RedisConfig(retention=None))
    assert Replayer(COLUMN_RULES).columns_only
    rows = await replay_streams(redis_url, COLUMN_RULES, targets, None, None, columns_only=False)
    cols = await replay_streams(redis_url, COLUMN_RULES, targets, None, None)
    want = [msgspec.json.encode(em.event) for em in rows.emitted]
    assert [msgspec.json.encode(em.event) for em in cols.emitted] == want
    assert cols.stats == rows.stats and rows.stats.snapshots == 800
    assert {em.event.rule for em in rows.emitted} >= {"oi-poll", "oi-put", "oi-day", "oi"}


def test_attached_columns_survive_other_snapshots_between_feeds() -> None:
    """Views are attached right before each evaluation, so a memo flooded by other snapshots
    between feeds (another stream, the live path in the same process) changes nothing."""
    from gex_alertd.rules.columns import FIELDS, columns, from_block

    history = [
        s
        for pair in zip(drifting("SPY", 150, 7), drifting("QQQ", 150, 8), strict=True)
        for s in pair
    ]
    full = Replayer(COLUMN_RULES)
    want = [msgspec.json.encode(em.event) for s in history for em in full.feed(s, None)]
    fast, got, noise = Replayer(COLUMN_RULES), [], drifting("IWM", 100, 9)
    for s in history:
        bare, block = store.decode_fields_columns(store.encode_fields(s), FIELDS)
        got += [msgspec.json.encode(em.event) for em in fast.feed(bare, None, from_block(block))]
        for other in noise:
            columns(other)
    assert got == want and len(want) > 10


def test_every_rule_type_is_column_only_and_never_reads_rows() -> None:
    import inspect

    from gex_alertd.rules.registry import BY_NAME, COLUMN_ONLY_TYPES

    for name, t in BY_NAME.items():
        module = inspect.getmodule(t.evaluate)
        assert module is not None
        source = inspect.getsource(module)
        assert name in COLUMN_ONLY_TYPES and ".strikes" not in source, name
