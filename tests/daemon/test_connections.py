"""The clients `redis:` selects, against a real Redis Cluster and a real Sentinel set: batched
commit scripts routed per slot, and a primary's death followed like a restart (the work fails,
stays with its caller, and succeeds against the promoted replica)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from redis.exceptions import RedisError, ResponseError

from gex_alertd.batching import ScriptBatcher
from gex_alertd.config import RedisConfig, SentinelConfig
from gex_alertd.connections import REDIS_DOWN, connect_config, is_cluster
from tests.daemon.test_cli_check_tail import run_cli
from tests.support.redis_cluster import RedisCluster, SentinelSet, wait_replicated
from tests.support.upstream import Upstream
from tests.support.wait import eventually

# one slot per call (the key and its hash tag), idempotent as a commit is: a batch resent after
# a failure that it partly survived counts each round once
ADD = """
if ARGV[1] == 'boom' then return redis.error_reply('ERR boom') end
redis.call('SADD', KEYS[1], ARGV[1])
return redis.call('SCARD', KEYS[1])
"""
SYMBOLS = [f"S{i:02d}" for i in range(40)]


def key(sym: str) -> str:
    return f"gex:{{{sym}}}:n"


async def commit_all(batcher: ScriptBatcher, syms: list[str], round_: str = "1") -> list[Any]:
    return await asyncio.gather(*(batcher.call([key(s)], [round_]) for s in syms))


async def retried(batcher: ScriptBatcher, syms: list[str]) -> list[Any]:
    """What the poller does with a pending snapshot: try again until Redis takes it."""
    out: list[Any] = []

    async def attempt() -> bool:
        nonlocal out
        try:
            out = await commit_all(batcher, syms, "2")
            return True
        except (*REDIS_DOWN, RedisError):
            return False

    await eventually(attempt, "the commits accepted again")
    return out


async def test_a_batch_on_the_cluster_goes_to_every_node_and_each_call_gets_its_reply(
    redis_cluster: RedisCluster,
) -> None:
    client = connect_config(RedisConfig(cluster=redis_cluster.startup_nodes))
    try:
        assert is_cluster(client)
        await client.ping()
        nodes = {
            client.nodes_manager.get_node_from_slot(client.keyslot(key(s))).name  # type: ignore[attr-defined]  # a RedisCluster under the Redis type
            for s in SYMBOLS
        }
        assert len(nodes) == 3  # the symbols spread over every primary
        batcher = ScriptBatcher(client, ADD, max_batch=64)
        await client.delete(*(key(s) for s in SYMBOLS))
        assert await commit_all(batcher, SYMBOLS) == [1] * len(SYMBOLS)
        ok: Any
        bad: Any
        ok, bad = await asyncio.gather(
            batcher.call([key("S00")], ["2"]),
            batcher.call([key("S01")], ["boom"]),
            return_exceptions=True,
        )
        assert ok == 2
        assert isinstance(bad, ResponseError) and "boom" in str(bad)
        await client.script_flush()  # every primary forgets the script: loaded again
        assert await batcher.call([key("S02")], ["2"]) == 2
    finally:
        await client.aclose()


async def test_the_cluster_client_follows_a_primary_failover(
    private_cluster: RedisCluster,
) -> None:
    client = connect_config(RedisConfig(cluster=private_cluster.startup_nodes))
    try:
        batcher = ScriptBatcher(client, ADD, max_batch=64)
        assert await commit_all(batcher, SYMBOLS) == [1] * len(SYMBOLS)
        victim = private_cluster.primaries()[0]
        for p in private_cluster.primaries():
            await asyncio.to_thread(wait_replicated, p)
        promoted = await asyncio.to_thread(private_cluster.kill_primary, victim)
        assert private_cluster.role(promoted) == "master"
        # nothing acknowledged before the death is lost, every commit lands once more
        assert await retried(batcher, SYMBOLS) == [2] * len(SYMBOLS)
    finally:
        await client.aclose()


async def test_the_sentinel_client_follows_the_promoted_replica(
    sentinel_set: SentinelSet,
) -> None:
    rc = RedisConfig(
        sentinel=SentinelConfig(master=sentinel_set.master_name, nodes=sentinel_set.sentinel_nodes)
    )
    client = connect_config(rc)
    try:
        assert not is_cluster(client)
        batcher = ScriptBatcher(client, ADD)
        assert await commit_all(batcher, SYMBOLS) == [1] * len(SYMBOLS)
        old = sentinel_set.primary.port
        await asyncio.to_thread(wait_replicated, sentinel_set.primary)
        new = await asyncio.to_thread(sentinel_set.kill_primary)
        assert new.port != old
        assert await retried(batcher, SYMBOLS) == [2] * len(SYMBOLS)
    finally:
        await client.aclose()


async def test_check_reaches_the_cluster_and_the_sentinel_primary(
    tmp_path: Path, redis_cluster: RedisCluster, sentinel_set: SentinelSet
) -> None:
    async with Upstream() as up:
        for name, redis in (
            ("cluster", f"{{cluster: {redis_cluster.startup_nodes}}}"),
            ("sentinel", f"{{sentinel: {{master: gex, nodes: {sentinel_set.sentinel_nodes}}}}}"),
        ):
            cfg = tmp_path / f"{name}.yaml"
            cfg.write_text(
                f"source: {{kind: flowgex, base_url: '{up.url}', api_key: k-12345}}\n"
                f"redis: {redis}\nwatch: {{symbols: [SPY]}}\n"
            )
            rc, out, err = await run_cli("check", "--config", str(cfg))
            assert rc == 0, err
            assert f"redis {name} " in out and ": ok (redis 7." in out, out


async def test_run_on_a_cluster_is_refused_with_the_reason(
    tmp_path: Path, redis_cluster: RedisCluster
) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"redis: {{cluster: {redis_cluster.startup_nodes}}}\nwatch: {{symbols: [SPY]}}\n"
    )
    rc, out, err = await run_cli("run", "--config", str(cfg))
    assert rc == 2, out + err
    assert "redis.cluster: `run` cannot commit on a Redis Cluster yet" in err
    assert "Traceback" not in err
