"""The Redis Cluster and Sentinel fixtures themselves: real nodes, every slot served, a
promoted replica after a primary's death."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.asyncio.sentinel import Sentinel

from tests.support.redis_cluster import RedisCluster, SentinelSet, cli, info_field


async def test_the_cluster_has_three_primaries_each_with_a_replica_and_every_slot(
    redis_cluster: RedisCluster,
) -> None:
    assert len(redis_cluster.primaries()) == 3
    for p in redis_cluster.primaries():
        assert redis_cluster.replica_of(p) is not p
    info = cli("cluster", "info", port=redis_cluster.nodes[0].port)
    assert info_field(info, "cluster_slots_assigned") == "16384"
    client = AsyncRedisCluster(
        startup_nodes=[ClusterNode("127.0.0.1", n.port) for n in redis_cluster.nodes]
    )
    try:
        for sym in ("SPY", "QQQ", "IWM", "TSLA"):  # spread over the slots
            await client.set(f"gex:{{{sym}}}:probe", sym)
            assert await client.get(f"gex:{{{sym}}}:probe") == sym.encode()
    finally:
        await client.aclose()


async def test_sentinel_promotes_the_replica_when_the_primary_dies(
    sentinel_set: SentinelSet,
) -> None:
    sentinel = Sentinel([("127.0.0.1", p) for p in sentinel_set.sentinel_ports])
    primary = sentinel.master_for(sentinel_set.master_name)
    await primary.set("k", "v")
    await primary.execute_command("WAIT", 1, 10000)
    old = sentinel_set.primary.port
    new = sentinel_set.kill_primary()
    assert new.port != old
    assert await sentinel.discover_master(sentinel_set.master_name) == ("127.0.0.1", new.port)
    assert await primary.get("k") == b"v"  # the client follows the sentinels
    await primary.aclose()


def test_a_missing_binary_names_the_package_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no redis-server, no redis-cli
    with pytest.raises(RuntimeError, match="apt-get install -y redis-server"):
        RedisCluster(tmp_path)
    with pytest.raises(RuntimeError, match="apt-get install -y redis-server"):
        SentinelSet(tmp_path)
