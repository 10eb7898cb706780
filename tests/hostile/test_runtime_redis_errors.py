"""Redis errors that are not connection errors (issue 17 item 3): classified from what a real
redis-server answers, a snapshot that can never commit set aside to gex:dead instead of being
retried forever, and OOM (maxmemory + noeviction) against the daemon process: backs off with one
line per episode, /healthz not ok with the reason, a metric by class, nothing lost."""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gex_alertd import keys
from gex_alertd.commit import CommitConflict, Committer
from gex_alertd.config import RedisConfig, WatchTarget
from gex_alertd.connections import entries
from gex_alertd.model import FlowGex, decode_flow_gex
from gex_alertd.notify import outbox
from gex_alertd.pipeline import Poller
from gex_alertd.redis_errors import (
    AUTH,
    CONFLICT,
    DATA,
    OOM,
    READONLY,
    SCRIPT,
    RedisTrouble,
    classify,
)
from gex_alertd.sources.backoff import Backoff
from gex_alertd.sources.base import Fetched
from tests.hostile.upstream import recent, snapshot
from tests.reliability.support import API_KEY, Proc, start_daemon
from tests.support.redis_server import RedisServer, free_port
from tests.support.upstream import Upstream, flow_gex_body
from tests.support.wait import eventually


async def _error_of(coro: object) -> RedisError:
    try:
        await coro  # type: ignore[misc]
    except RedisError as exc:
        return exc
    raise AssertionError("no error")


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RedisServer]:
    srv = RedisServer(tmp_path / "r", aof=False)
    srv.start()
    yield srv
    srv.stop()


async def test_real_redis_errors_are_classified(
    server: RedisServer, redis: aioredis.Redis, tmp_path: Path
) -> None:
    r = aioredis.Redis.from_url(server.url)
    try:
        await r.set("k", "v")
        assert classify(await _error_of(r.xadd("k", {"a": 1}))) == DATA  # WRONGTYPE
        assert classify(await _error_of(r.xadd("s", {"a": 1}, id="0-0"))) == DATA
        assert classify(await _error_of(r.execute_command("XADD", "s", "-5-0", "a", 1))) == DATA
        assert classify(await _error_of(r.eval("return nosuch.call()", 0))) == SCRIPT
        assert classify(CommitConflict("changed")) == CONFLICT
        await r.config_set("maxmemory-policy", "noeviction")
        await r.config_set("maxmemory", 1)
        assert classify(await _error_of(r.set("x", "y"))) == OOM
        await r.config_set("maxmemory", 0)
        # a replica refuses writes (its primary: the session's server)
        port = int(str(redis.connection_pool.connection_kwargs["port"]))
        await r.execute_command("REPLICAOF", "127.0.0.1", port)
        assert classify(await _error_of(r.set("x", "y"))) == READONLY
        await r.execute_command("REPLICAOF", "NO", "ONE")
        await r.config_set("requirepass", "s3cret-pass")
        fresh = aioredis.Redis.from_url(server.url)
        try:
            assert classify(await _error_of(fresh.set("x", "y"))) == AUTH
        finally:
            await fresh.aclose()
    finally:
        await r.aclose()


# --- a snapshot that can never commit -----------------------------------------------------


class Scripted:
    """A Source that hands out the snapshots it was given (the client would refuse an as_of
    before 1970 at validation; this one reaches the commit, as it did before that check)."""

    def __init__(self, snaps: list[FlowGex]) -> None:
        self.snaps = snaps

    async def fetch(self, symbol: str, expiry: str | None = None) -> Fetched:
        return Fetched(self.snaps.pop(0), False, 0, 0.0)

    async def close(self) -> None:
        pass


def _snap(as_of: datetime) -> FlowGex:
    good = decode_flow_gex(msgspec.json.encode(flow_gex_body("SPY", as_of=datetime.now(UTC))))
    return msgspec.structs.replace(good, as_of=as_of)


async def test_snapshot_that_can_never_commit_is_set_aside_not_retried_forever(
    redis: aioredis.Redis,
) -> None:
    committer = Committer(redis, [], RedisConfig(retention=None))
    ancient = _snap(datetime(1969, 12, 31, tzinfo=UTC))
    later = _snap(datetime.now(UTC).replace(microsecond=0))
    trouble = RedisTrouble()
    poller = Poller(
        WatchTarget("SPY", None, 1.0, 0.0),
        Scripted([ancient, later]),
        committer.commit,
        backoff=Backoff(0.001, 0.002, random.Random(1)),
        set_aside=committer.set_aside,
        trouble=trouble,
    )
    assert await poller.poll() == "set_aside"
    assert poller.pending == [] and poller.set_aside_count == 1
    assert poller.health()["set_aside_in_a_row"] == 1
    assert not trouble.episodes  # a data error is per snapshot: no episode stays open
    (dead,) = entries(await redis.xrange(keys.DEAD))
    fields = dead[1]
    assert fields[b"kind"] == b"snapshot" and fields[b"symbol"] == b"SPY"
    assert b"Invalid stream ID" in fields[b"reason"] and b"data" in fields[b"reason"]
    assert json.loads(fields[b"snapshot"])["as_of"].startswith("1969-12-31")
    # the next snapshot is committed: nothing is stuck behind the dead one
    assert await poller.poll() == "stored"
    assert await redis.xlen(keys.snap("SPY")) == 1
    assert poller.health()["set_aside"] == 1
    assert poller.health()["set_aside_in_a_row"] == 0  # a commit ends the run
    # the alert dead-letter tools do not mistake it for an alert
    assert await outbox.list_dead(redis) == []


# --- OOM against the daemon process ------------------------------------------------------


async def _health(session: aiohttp.ClientSession, port: int) -> tuple[int, dict]:
    try:
        async with session.get(f"http://127.0.0.1:{port}/healthz") as resp:
            return resp.status, await resp.json()
    except aiohttp.ClientConnectionError:
        return 0, {"problems": [], "redis_errors": {}}  # not listening yet


@dataclass
class Running:
    """A real daemon polling SPY, QQQ and IWM every 0.05 s from `up` (short back-offs), its
    Redis client and an HTTP session for its /healthz."""

    up: Upstream
    daemon: Proc
    r: aioredis.Redis
    session: aiohttp.ClientSession
    port: int

    async def health(self) -> tuple[int, dict]:
        return await _health(self.session, self.port)

    async def stored(self, symbol: str, n: int) -> bool:
        assert self.daemon.alive, self.daemon.output()[-3000:]
        return int(await self.r.xlen(keys.snap(symbol))) >= n

    async def every_symbol_stored(self, n: int) -> bool:
        return all([await self.stored(s, n) for s in SYMBOLS])


SYMBOLS = ("SPY", "QQQ", "IWM")


@asynccontextmanager
async def _three_symbols(
    server: RedisServer, tmp_path: Path, answer: Callable[[Any], Any] | None = None
) -> AsyncIterator[Running]:
    """`Running`, its upstream serving each symbol a fresh snapshot unless `answer` says
    otherwise; stopped (killed if still alive) at the end."""
    async with Upstream() as up:
        up.set_default(
            answer or (lambda req: snapshot(req.path.rsplit("/", 1)[-1], as_of=recent()))
        )
        port = free_port()
        config = tmp_path / "config.yaml"
        config.write_text(f"""
source: {{kind: flowgex, base_url: "{up.url}", api_key: {API_KEY}, requests_per_min: 100000,
          backoff_base_s: 0.05, backoff_max_s: 0.2}}
redis: {{url: "{server.url}"}}
watch: {{interval_s: 0.05, jitter_s: 0, market_hours: always, symbols: [{", ".join(SYMBOLS)}]}}
ops: {{listen: "127.0.0.1:{port}", log_format: json}}
""")
        r = aioredis.Redis.from_url(server.url)
        daemon = await start_daemon(tmp_path, config)
        session = aiohttp.ClientSession()
        try:
            yield Running(up, daemon, r, session, port)
        finally:
            await session.close()
            await r.aclose()
            if daemon.alive:
                daemon.kill()


async def _snapshot_stream_made_a_string(r: aioredis.Redis, symbol: str) -> None:
    """The symbol's snapshot stream replaced by a string, as by hand: each commit of it gets
    WRONGTYPE, a data error, and is set aside."""
    await r.delete(keys.snap(symbol))
    await r.set(keys.snap(symbol), "made by hand")


async def test_oom_backs_off_with_one_line_per_episode_and_healthz_says_why(
    private_redis: RedisServer, tmp_path: Path
) -> None:
    async with _three_symbols(private_redis, tmp_path) as run:
        r, daemon = run.r, run.daemon
        try:
            await eventually(
                lambda: run.every_symbol_stored(2), "snapshots stored for every symbol"
            )
            await r.config_set("maxmemory-policy", "noeviction")
            await r.config_set("maxmemory", 1)

            async def unhealthy() -> bool:
                status, body = await run.health()
                return status == 503 and any("redis oom" in p for p in body["problems"])

            await eventually(unhealthy, "/healthz not ok, naming the OOM")

            async def retried() -> bool:
                _, body = await run.health()
                return bool(body["redis_errors"].get("oom", {}).get("failures", 0) >= 6)

            # every target backs off and retries (its fetched snapshot kept pending) while it lasts
            await eventually(retried, "several refused commits in the episode")
            held = {s: int(await r.xlen(keys.snap(s))) for s in SYMBOLS}
            async with run.session.get(f"http://127.0.0.1:{run.port}/metrics") as resp:
                metrics = await resp.text()
            assert 'gexalertd_redis_errors_total{class="oom"}' in metrics

            await r.config_set("maxmemory", 0)
            await eventually(
                lambda: run.every_symbol_stored(max(held.values()) + 2),
                "commits going through after OOM",
            )

            async def healthy() -> bool:
                status, _ = await run.health()
                return status == 200

            await eventually(healthy, "/healthz ok again")
            events = daemon.events()
            opened = [e for e in events if e.get("event", "").startswith("redis refusing")]
            closed = [e for e in events if e.get("event", "").startswith("redis commits going")]
            assert [e["error_class"] for e in opened] == ["oom"], opened
            assert [e["error_class"] for e in closed] == ["oom"] and closed[0]["failures"] >= 1
            assert "Traceback" not in daemon.output()
            assert await daemon.stop() == 0
        finally:
            await r.config_set("maxmemory", 0)


async def test_a_target_whose_snapshots_keep_being_set_aside_makes_healthz_not_ok(
    private_redis: RedisServer, tmp_path: Path
) -> None:
    """A snapshot stream made a string by hand: every SPY snapshot is set aside to gex:dead
    (its rules see nothing) while the other symbols go on. One such snapshot is an event; three
    in a row are a condition, and /healthz says which target and why until one commits."""
    async with _three_symbols(private_redis, tmp_path) as run:
        r = run.r
        await eventually(lambda: run.every_symbol_stored(2), "snapshots stored for every symbol")
        await _snapshot_stream_made_a_string(r, "SPY")

        async def unhealthy() -> bool:
            status, body = await run.health()
            return status == 503 and any(
                p.startswith("snapshots of SPY cannot be committed") for p in body["problems"]
            )

        await eventually(unhealthy, "/healthz not ok, naming SPY")
        _, body = await run.health()
        (line,) = [p for p in body["problems"] if "SPY" in p]
        assert "WRONGTYPE" in line and "gex:dead" in line, line
        assert body["symbols"]["SPY"]["set_aside_in_a_row"] >= 3
        assert body["symbols"]["QQQ"]["set_aside_in_a_row"] == 0
        assert int(await r.xlen(keys.DEAD)) >= 3  # nothing lost: each one is there
        qqq = int(await r.xlen(keys.snap("QQQ")))
        await eventually(lambda: run.stored("QQQ", qqq + 2), "the other symbols go on")

        await r.delete(keys.snap("SPY"))
        await eventually(lambda: run.stored("SPY", 1), "SPY committed again")

        async def healthy() -> bool:
            status, _ = await run.health()
            return status == 200

        await eventually(healthy, "/healthz ok again")
        assert "Traceback" not in run.daemon.output()
        assert await run.daemon.stop() == 0


async def test_the_set_aside_problem_keeps_its_reason_while_the_upstream_repeats_itself(
    private_redis: RedisServer, tmp_path: Path
) -> None:
    """The provider refreshes a snapshot every ~15 s (flowgex-api.md), so most polls of a
    target polled faster than that fetch the same snapshot again: a repeat, nothing to commit.
    A repeat (or a failed fetch) says nothing about why the snapshots were set aside, so the
    /healthz problem still gives the reason of the last one set aside, not `None`."""
    frozen: dict[str, str] = {}  # symbol -> the as_of the upstream keeps serving

    def answer(req: Any) -> Any:
        symbol = req.path.rsplit("/", 1)[-1]
        return snapshot(symbol, as_of=frozen.get(symbol) or recent())

    async with _three_symbols(private_redis, tmp_path, answer) as run:
        await eventually(lambda: run.stored("SPY", 1), "SPY snapshots stored")
        await _snapshot_stream_made_a_string(run.r, "SPY")

        async def named() -> bool:
            status, body = await run.health()
            return status == 503 and any("snapshots of SPY" in p for p in body["problems"])

        await eventually(named, "/healthz not ok, naming SPY")
        # from here on the upstream serves SPY's newest snapshot again and again
        frozen["SPY"] = recent()
        seen = len(run.up.requests_for(symbol="SPY"))

        async def repeated() -> bool:
            # polls of a target never overlap: the third request after the freeze began once
            # the second, a repeat, was done
            return len(run.up.requests_for(symbol="SPY")) >= seen + 3

        await eventually(repeated, "SPY polled again, each time the same snapshot")
        status, body = await run.health()
        assert status == 503
        (line,) = [p for p in body["problems"] if "SPY" in p]
        assert "WRONGTYPE" in line and not line.endswith("None"), line
        assert await run.daemon.stop() == 0
