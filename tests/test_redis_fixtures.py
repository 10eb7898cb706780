"""The Redis Cluster and Sentinel fixtures themselves: real nodes, every slot served, a
promoted replica after a primary's death."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.asyncio.sentinel import Sentinel

from tests.support.redis_cluster import RedisCluster, SentinelSet, cli, cut_off, info_field


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


def test_a_cluster_primary_killed_with_its_replica_cut_off_loses_its_last_write_and_rejoins(
    private_cluster: RedisCluster,
) -> None:
    """cut_off: the promoted replica misses what the primary took while it was cut off (the
    partition the failover bench measures with kill_primary(lag_s)); rejoin: the dead node is
    back as the replica of the promoted one. primary_for names the primary serving a key."""
    c = private_cluster
    key = "gex:{SPY}:probe"
    primary = c.primary_for(key)
    assert cli("set", key, "before", port=primary.port).strip() == "OK"
    assert cli("wait", "1", "10000", port=primary.port).strip() == "1"
    replica = c.replica_of(primary)
    with cut_off(replica, primary):
        assert cli("set", key, "during", port=primary.port).strip() == "OK"
        primary.kill()
    c.wait_promoted(replica)
    promoted = replica
    assert promoted is replica and c.primary_for(key) is replica
    assert cli("get", key, port=promoted.port).strip() == "before"  # "during" was lost
    c.rejoin(primary)
    assert c.role(primary) == "slave" and c.replica_of(promoted) is primary
    assert cli("get", key, port=promoted.port).strip() == "before"


def test_a_missing_binary_names_the_package_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no redis-server, no redis-cli
    with pytest.raises(RuntimeError, match="apt-get install -y redis-server"):
        RedisCluster(tmp_path)
    with pytest.raises(RuntimeError, match="apt-get install -y redis-server"):
        SentinelSet(tmp_path)
