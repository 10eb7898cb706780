"""WAIT after each commit batch (redis.wait_replicas): a commit no replica acknowledged is not
acknowledged, the snapshot stays pending and is retried; off by default on one node."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import redis.asyncio as aioredis

from gex_alertd import keys
from gex_alertd.batching import NotReplicated, ScriptBatcher
from gex_alertd.commit import Committer
from gex_alertd.config import RedisConfig, SentinelConfig
from gex_alertd.connections import connect_config
from tests.daemon.test_connections import ADD, SYMBOLS, commit_all
from tests.daemon.test_pipeline import T0, make_poller
from tests.support.redis_cluster import RedisCluster, cli, info_field
from tests.support.redis_server import RedisServer
from tests.support.upstream import Reply, Upstream, flow_gex_body
from tests.support.wait import eventually


def test_wait_is_off_for_one_node_and_on_for_a_cluster_or_sentinel() -> None:
    assert RedisConfig().replicas_to_wait == 0
    assert RedisConfig(cluster=["127.0.0.1:7000"]).replicas_to_wait == 1
    assert RedisConfig(sentinel=SentinelConfig(master="m", nodes=["h:1"])).replicas_to_wait == 1
    assert RedisConfig(url="redis://h:1/0", wait_replicas=1).replicas_to_wait == 1
    assert RedisConfig(cluster=["127.0.0.1:7000"], wait_replicas=0).replicas_to_wait == 0


async def test_a_commit_without_a_replica_stays_pending_until_one_acknowledges(
    tmp_path: Path, private_redis: RedisServer
) -> None:
    # the longest timeout allowed: without a replica WAIT always runs it out (4 s, whatever the
    # machine), and with one a loaded machine still acknowledges well inside it
    rc = RedisConfig(url=private_redis.url, retention=None, wait_replicas=1, wait_timeout_ms=4000)
    redis = connect_config(rc)
    follow = ("--replicaof", "127.0.0.1", str(private_redis.port))
    replica = RedisServer(tmp_path / "replica", aof=False, extra_args=follow)
    try:
        async with Upstream() as up:
            up.push(Reply.json(flow_gex_body("SPY", as_of=T0)))
            committer = Committer(redis, [], rc)
            poller, client = make_poller(up, redis, committer.commit)
            try:
                assert await poller.poll() == "redis_down"
                assert len(poller.pending) == 1 and "NotReplicated" in str(poller.last_error)
                # the primary did run the script: only the acknowledgement is missing
                assert await redis.xlen(keys.snap("SPY")) == 1
                # the replica's first sync at once, not after the 5 s the primary would wait
                # for more replicas to join (what the cluster fixture's nodes start with)
                delay = ("repl-diskless-sync-delay", "0")
                assert cli("config", "set", *delay, port=private_redis.port).strip() == "OK"
                replica.start()
                await eventually(
                    lambda: info_field(cli("info", "replication", port=replica.port),
                                       "master_link_status") == "up",
                    "the replica in sync",
                )  # fmt: skip
                poller.next_attempt = 0.0  # the backoff has run out
                up.push(Reply.json(flow_gex_body("SPY", as_of=T0 + timedelta(seconds=15))))
                assert await poller.poll() == "stored"
                assert not poller.pending
                # the retried one was a repeat (already written), the new one committed once
                assert await redis.xlen(keys.snap("SPY")) == 2
                replica_client = aioredis.Redis(port=replica.port)
                try:
                    await eventually(
                        lambda: _xlen(replica_client, keys.snap("SPY"), 2), "replicated"
                    )
                finally:
                    await replica_client.aclose()
            finally:
                await client.close()
    finally:
        replica.stop()
        await redis.aclose()


async def _xlen(client: aioredis.Redis, key: str, n: int) -> bool:
    return bool(await client.xlen(key) == n)


async def test_a_batch_on_the_cluster_waits_for_each_nodes_replica(
    redis_cluster: RedisCluster,
) -> None:
    client = connect_config(RedisConfig(cluster=redis_cluster.startup_nodes))
    try:
        await client.delete(*(f"gex:{{{s}}}:n" for s in SYMBOLS))
        acked = ScriptBatcher(client, ADD, max_batch=64, wait_replicas=1)
        assert await commit_all(acked, SYMBOLS) == [1] * len(SYMBOLS)
        # two replicas asked of nodes with one each: every call refused, none lost
        strict = ScriptBatcher(client, ADD, max_batch=64, wait_replicas=2, wait_timeout_ms=50)
        got = await asyncio.gather(*(strict.call([f"gex:{{{s}}}:n"], ["2"]) for s in SYMBOLS),
                                   return_exceptions=True)  # fmt: skip
        assert all(isinstance(g, NotReplicated) for g in got), got
    finally:
        await client.aclose()
