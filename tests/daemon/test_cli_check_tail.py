"""`check` against a real upstream and Redis, and `tail` printing snapshots as they land."""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import UTC, datetime, timedelta

import msgspec

from gex_alertd import keys, store
from gex_alertd.config import RedisConfig
from gex_alertd.model import AlertEvent, decode_flow_gex, outbox_fields
from tests.support.upstream import Reply, Upstream, flow_gex_body
from tests.support.wait import WAIT_S


def write_config(tmp_path, redis_url: str, base_url: str) -> str:
    p = tmp_path / "c.yaml"
    p.write_text(
        f"source: {{kind: flowgex, base_url: '{base_url}', api_key: '${{TEST_KEY}}'}}\n"
        f"redis: {{url: '{redis_url}'}}\n"
        "watch: {symbols: [SPY]}\n"
    )
    return str(p)


async def run_cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gex_alertd", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), timeout=WAIT_S)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_check_accepts_a_good_key(tmp_path, redis_url):
    async with Upstream() as up:
        cfg = write_config(tmp_path, redis_url, up.url)
        rc, out, err = await run_cli("check", "--config", cfg, env={"TEST_KEY": "good-key-123"})
        assert up.requests[0].headers["X-Api-Key"] == "good-key-123"
    assert rc == 0, err
    assert "redis" in out and "key accepted" in out
    assert "good-key-123" not in out + err


async def test_check_reports_a_refused_key_without_leaking_it(tmp_path, redis_url):
    async with Upstream() as up:
        up.push(Reply(401, {"error": "unauthorized", "message": "Invalid API key"}))
        cfg = write_config(tmp_path, redis_url, up.url)
        rc, out, err = await run_cli("check", "--config", cfg, env={"TEST_KEY": "bad-key-456"})
    assert rc == 1
    assert "key refused" in err and "Invalid API key" in err
    assert "bad-key-456" not in out + err


async def test_check_reports_unreachable_redis(tmp_path):
    async with Upstream() as up:
        cfg = write_config(tmp_path, "redis://127.0.0.1:1/0", up.url)
        rc, _out, err = await run_cli("check", "--config", cfg, env={"TEST_KEY": "k-789xyz"})
    assert rc == 1
    assert "FAIL redis redis://127.0.0.1:1/0" in err


async def test_tail_prints_new_snapshots(tmp_path, redis, redis_url):
    cfg = write_config(tmp_path, redis_url, "http://127.0.0.1:9")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gex_alertd", "tail", "--config", cfg, "SPY",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "TEST_KEY": "k-000000"},
    )  # fmt: skip
    try:
        body = flow_gex_body("SPY", as_of=datetime(2026, 11, 24, 15, 0, tzinfo=UTC), spot=601.5)
        snap = decode_flow_gex(msgspec.json.encode(body))
        assert proc.stdout is not None
        # one read, never cancelled: a line half read when a short timeout fired would be lost
        reading = asyncio.ensure_future(proc.stdout.readline())
        # keep writing newer snapshots until tail, once started and subscribed, prints; how
        # long its start-up takes is the machine's business
        async with asyncio.timeout(WAIT_S):
            while not reading.done():
                await store.write_snapshot(
                    redis, snap, None, RedisConfig(url=redis_url, retention=None)
                )
                snap = msgspec.structs.replace(snap, as_of=snap.as_of + timedelta(seconds=1))
                await asyncio.wait({reading}, timeout=0.2)
        text = reading.result().decode()
        assert "SPY" in text and "spot     601.50" in text and "20 strikes" in text, text
    finally:
        proc.terminate()
        await proc.wait()


def _alert(n: int, symbol: str) -> AlertEvent:
    as_of = f"2026-11-24T15:00:{n % 60:02d}.000Z"
    return AlertEvent(
        id=f"t:{symbol}:{n}", rule="r", type="flip_cross", symbol=symbol, expiry=None,
        severity="warning", as_of=as_of, fired_at=as_of, summary=f"{symbol} alert {n}",
    )  # fmt: skip


async def test_tail_alerts_follows_every_outbox(tmp_path, redis, redis_url):
    # one not watched, written before the start: found by SCAN; with --last, the newest two
    # entries of all outboxes by entry time
    # (ids a ms apart: entries of two streams in the same ms have no order)
    await redis.xadd(keys.outbox("ZZZ"), outbox_fields(_alert(0, "ZZZ"), ["ops"]), id="1-0")
    await redis.xadd(keys.outbox("SPY"), outbox_fields(_alert(1, "SPY"), ["ops"]), id="2-0")
    await redis.xadd(keys.outbox("ZZZ"), outbox_fields(_alert(2, "ZZZ"), ["ops"]), id="3-0")
    await redis.xadd(keys.outbox("ZZZ"), {"id": "x", "event": "{not json"}, id="4-0")  # skipped
    cfg = write_config(tmp_path, redis_url, "http://127.0.0.1:9")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gex_alertd", "tail", "--config", cfg, "--alerts", "--last", "3",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "TEST_KEY": "k-000000"},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        lines = [(await asyncio.wait_for(proc.stdout.readline(), WAIT_S)).decode()]
        lines.append((await asyncio.wait_for(proc.stdout.readline(), WAIT_S)).decode())
        assert "SPY alert 1" in lines[0] and "ZZZ alert 2" in lines[1], lines
        # then new alerts of the watched symbol, the operator outbox and the unwatched one
        seen: set[str] = set()
        reading = asyncio.ensure_future(proc.stdout.readline())
        n = 10
        async with asyncio.timeout(WAIT_S):
            while len(seen) < 3:
                for sym in {"SPY", keys.OPS_SYMBOL, "ZZZ"} - seen:
                    await redis.xadd(keys.outbox(sym), outbox_fields(_alert(n, sym), ["ops"]))
                    n += 1
                await asyncio.wait({reading}, timeout=0.2)
                while reading.done():
                    text = reading.result().decode()
                    seen |= {s for s in ("SPY", "*", "ZZZ") if f"{s} alert" in text}
                    reading = asyncio.ensure_future(proc.stdout.readline())
                    await asyncio.wait({reading}, timeout=0.05)
        reading.cancel()
    finally:
        proc.terminate()
        await proc.wait()
    assert proc.stderr is not None
    assert "no alert event" in (await proc.stderr.read()).decode()


def test_tail_never_prints_the_upstreams_control_characters(capsys) -> None:
    # the body's flip status (and label) are printed by tail: an OSC 52 sequence there wrote
    # the operator's clipboard (`check` and the alerts' messages already made them '?')
    from gex_alertd.commands import _print_entry

    body = flow_gex_body(
        "SPY",
        as_of=datetime(2026, 11, 24, 15, 0, tzinfo=UTC),
        flip_status="\x1b]52;c;cHduZWQ=\x07",
    )
    _print_entry(store.encode_fields(decode_flow_gex(msgspec.json.encode(body))), False)
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out, repr(out)
    assert "?]52;c;cHduZWQ=?" in out


async def test_the_shipped_config_and_rule_files_pass_check(redis_url):
    """What a newcomer runs first: `check --strict` on config.example.yaml (with its rules.d/
    files), against a real Redis, says ok; every rule of every shipped rule file is loaded."""
    example, n_rules = _shipped()
    rc, out, err = await run_cli(
        "check", "--strict", "--config", example, env={"REDIS_URL": redis_url}
    )
    assert rc == 0, out + err
    assert f"{n_rules} rules" in out and "warning" not in out + err
    assert "redis" in out


def _shipped() -> tuple[str, int]:
    """config.example.yaml's path and the number of rules in the shipped rule files."""
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parents[2]
    rule_files = sorted((root / "rules.d").glob("*.yaml"))
    assert rule_files
    n_rules = sum(len(yaml.safe_load(f.read_text())) for f in rule_files)
    return str(root / "config.example.yaml"), n_rules
