"""Real daemon processes sharing one Redis: targets split by ownership, taken over on death,
and a clean SIGTERM with thousands of targets queued.

Each daemon polls with its own API key, so the upstream's request log says who polled what.
"""

from __future__ import annotations

import asyncio
import signal
from collections import defaultdict
from pathlib import Path
from typing import Any

from gex_alertd.ownership import owner
from tests.reliability.support import GEX_ALERTD, Proc, spawn
from tests.support.redis_server import RedisServer
from tests.support.upstream import Upstream
from tests.support.wait import WAIT_S, eventually

SYMBOLS = [f"S{i:02d}" for i in range(24)]
# the kill test waits for the dead daemon's entry to expire: its timeout (15 s) plus a beat
TAKEOVER_WAIT_S = WAIT_S + 20


def config(base_url: str, redis_url: str, key: str, symbols: list[str], interval: float) -> str:
    return f"""
source: {{kind: flowgex, base_url: "{base_url}", api_key: {key}, requests_per_min: 1000000,
          timeout_s: 10, backoff_base_s: 0.05, backoff_max_s: 0.5}}
redis: {{url: "{redis_url}"}}
watch: {{interval_s: {interval}, jitter_s: 0, market_hours: always, symbols: {symbols}}}
channels: {{tty: {{type: console}}}}
rules:
  - {{name: sign, type: net_gex_sign, symbols: '*', direction: any, cooldown: 0s,
      severity: info, channels: [tty]}}
ops: {{listen: null, log_format: json, log_level: info}}
"""


async def start(tmp: Path, name: str, text: str) -> tuple[Proc, str]:
    home = tmp / name
    home.mkdir()
    (home / "config.yaml").write_text(text)
    # on uvloop (the `fast` extra): the one place the suite runs whole daemons on it, so a
    # uvloop-only fault (its transports are not asyncio's classes) cannot hide behind the default
    proc = await spawn(
        [GEX_ALERTD, "run", "--config", str(home / "config.yaml"), "--uvloop"],
        home / "daemon.log",
        home,
    )
    await proc.wait_log("gex-alertd started")
    started = next(e for e in proc.events() if e.get("event") == "gex-alertd started")
    return proc, started["instance"]


def polled_by(up: Upstream, since: int = 0) -> dict[str, set[str]]:
    """symbol -> the API keys that polled it, over requests[since:]."""
    out: dict[str, set[str]] = defaultdict(set)
    for r in up.requests[since:]:
        out[r.path.rsplit("/", 1)[-1]].add(r.headers.get("X-Api-Key", ""))
    return out


def problems(proc: Proc) -> list[str]:
    bad = ("Error running job", "skipped", "missed by", "Traceback")
    lines = proc.output().splitlines()
    return [ln for ln in lines if any(b in ln for b in bad) or '"level": "error"' in ln]


async def test_two_daemons_split_the_watchlist_and_one_takes_over_when_the_other_dies(
    tmp_path: Path, private_redis: RedisServer
) -> None:
    async with Upstream() as up:
        a, id_a = await start(
            tmp_path, "a", config(up.url, private_redis.url, "key-a", SYMBOLS, 0.2)
        )
        b: Proc | None = None
        try:
            await eventually(lambda: set(polled_by(up)) == set(SYMBOLS), "A polls every symbol")
            b, id_b = await start(
                tmp_path, "b", config(up.url, private_redis.url, "key-b", SYMBOLS, 0.2)
            )
            assert id_a != id_b
            mine = {s: ("key-a" if owner(s, [id_a, id_b]) == id_a else "key-b") for s in SYMBOLS}
            assert set(mine.values()) == {"key-a", "key-b"}  # 24 symbols: both own some

            # after the hand-over every symbol is polled by its owner alone
            mark = len(up.requests)

            def settled() -> bool:
                nonlocal mark
                seen = polled_by(up, mark)
                if set(seen) != set(SYMBOLS):
                    return False
                if all(seen[s] == {mine[s]} for s in SYMBOLS):
                    return True
                mark = len(up.requests)  # still handing over: look at a later window
                return False

            await eventually(settled, "each symbol polled only by its owner")

            # B dies without a word: A takes its symbols back once B's entry expires
            b.kill()
            await asyncio.wait_for(b.proc.wait(), WAIT_S)
            mark = len(up.requests)
            await eventually(
                lambda: (
                    polled_by(up, mark).keys() == set(SYMBOLS)
                    and all(v == {"key-a"} for v in polled_by(up, mark).values())
                ),
                "A polls every symbol again",
                TAKEOVER_WAIT_S,
            )
            assert await a.stop() == 0
            assert problems(a) == [], problems(a)
        finally:
            for p in (a, b):
                if p is not None:
                    p.kill()


async def test_sigterm_with_thousands_of_targets_queued_exits_cleanly(
    tmp_path: Path, private_redis: RedisServer
) -> None:
    symbols = [f"T{i:04d}" for i in range(2000)]
    async with Upstream() as up:
        proc, _ = await start(
            tmp_path, "big", config(up.url, private_redis.url, "key-big", symbols, 1.0)
        )
        try:
            await eventually(lambda: len(up.requests) >= 2500, "a full round and more")
            proc.proc.send_signal(signal.SIGTERM)
            assert await proc.stop() == 0
        finally:
            proc.kill()
    events: list[dict[str, Any]] = proc.events()
    assert any(e.get("event") == "gex-alertd stopped" for e in events)
    # the start-up log says what the budget allows (here: everything asked for)
    (budget,) = [e for e in events if e.get("event") == "request budget"]
    assert budget["targets"] == 2000 and budget["lag_s"] == 0
    assert problems(proc) == [], problems(proc)[:5]
    warnings = [e for e in events if e.get("level") in ("warning", "error")]
    assert warnings == [], warnings[:5]


async def test_startup_log_says_when_the_budget_stretches_every_interval(
    tmp_path: Path, private_redis: RedisServer
) -> None:
    symbols = [f"U{i:03d}" for i in range(200)]
    text = config("http://127.0.0.1:9", private_redis.url, "key-u", symbols, 1.0)
    text = text.replace("requests_per_min: 1000000", "requests_per_min: 600")
    proc, _ = await start(tmp_path, "over", text)
    try:
        assert await proc.stop() == 0
    finally:
        proc.kill()
    (warned,) = [
        e for e in proc.events() if e.get("event") == "watchlist exceeds the request budget"
    ]
    # 200 targets at 1 s ask for 12,000/min; 600/min gives each one a poll every 20 s
    assert warned["overloaded"] is True and abs(warned["slowest_achieved_s"] - 20.0) < 1e-3
    assert "source.requests_per_min" in warned["plan"]
