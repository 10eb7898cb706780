from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, settings

from tests.support import process
from tests.support.exchanges import exchanges  # noqa: F401  (a fixture for every test)
from tests.support.redis_cluster import RedisCluster, SentinelSet
from tests.support.redis_server import RedisServer
from tests.support.wait import WAIT_S

# On a busy CI machine an example, or drawing its data, takes as long as the machine makes it:
# no per-example deadline, and slow data generation is not a failure of the code under test.
settings.register_profile("gex", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("gex")

# Tests talk to 127.0.0.1 only; make sure no proxy from the environment gets in between.
for _var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
    os.environ.pop(_var, None)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    yield from process.serving(lambda: RedisServer(tmp_path_factory.mktemp("redis")))


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_server.url)
    await client.flushall()
    yield client
    await client.aclose()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of the test's own, for tests that kill and restart it."""
    yield from process.serving(lambda: RedisServer(tmp_path / "redis"))


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """A real Redis Cluster (3 primaries + 3 replicas) shared by the session: never kill its
    nodes (use `private_cluster`)."""
    yield from process.serving(lambda: RedisCluster(tmp_path_factory.mktemp("cluster")))


@pytest.fixture
def private_cluster(tmp_path: Path) -> Iterator[RedisCluster]:
    """A Redis Cluster of the test's own, for tests that kill a primary."""
    yield from process.serving(lambda: RedisCluster(tmp_path / "cluster"))


@pytest.fixture
def sentinel_set(tmp_path: Path) -> Iterator[SentinelSet]:
    """A primary, a replica and three sentinels of the test's own (tests kill the primary)."""
    yield from process.serving(lambda: SentinelSet(tmp_path / "sentinel"))


# Whole-daemon runs (several `gex-alertd run` processes, a Redis Cluster or Sentinel set each,
# SIGKILLs, failovers): under `make test` (pytest-xdist: `-n 2 --dist loadgroup`) they are one
# unit of work, run by one worker one after another as without xdist, so two of them never load
# the box together; the other worker runs the rest beside them. Grouped here by path, on the
# controller: xdist 3.8's own `xdist_group` mark does not group under pytest 9.2 (it rewrites
# a node id that pytest no longer reads: pytest-xdist issue 1386).
DAEMON_RUNS = ("tests/e2e/", "tests/reliability/")
# one daemon at the shipped simulation speed, idle but for a poll every 2 s: it waits its ~35 s
# beside the group, not in it
BESIDE_DAEMON_RUNS = ("tests/e2e/test_demo.py::",)


# pyproject's `timeout` (120 s) catches a hang in an ordinary test. A whole-daemon run is a
# chain of waits on real time (joins wait an interval plus a beat, a SIGKILLed member's targets
# move 15-20 s later, 20 daemon lives start one after another, the demo's alerts come ~60 s in),
# each bounded on its own by tests.support.wait.WAIT_S: 60-75 s on an idle box, 75 s at load 10
# (make test beside 8 busy loops), so a box 3x slower than that cut the test short at 120 s,
# mid-way through a wait that was still within its own bound. These get a bound past their
# steps' own (a hang still fails, naming what it waited for); a file's own mark stands.
DAEMON_RUN_TIMEOUT_S = 6 * WAIT_S


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.nodeid.startswith(DAEMON_RUNS) and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(DAEMON_RUN_TIMEOUT_S))


def daemon_runs_scope(nodeid: str) -> str | None:
    """The group a test belongs to under `--dist loadgroup`, None when it has none of ours."""
    if nodeid.startswith(DAEMON_RUNS) and not nodeid.startswith(BESIDE_DAEMON_RUNS):
        return "daemon-runs"
    return None


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    if config.getvalue("dist") != "loadgroup":
        return None  # xdist's own
    from xdist.scheduler import LoadGroupScheduling

    class DaemonRunsScheduling(LoadGroupScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return daemon_runs_scope(nodeid) or super()._split_scope(nodeid)

    return DaemonRunsScheduling(config, log)
