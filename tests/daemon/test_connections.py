"""The clients `redis:` selects, against a real Redis Cluster and a real Sentinel set: batched
commit scripts routed per slot, and a primary's death followed like a restart (the work fails,
stays with its caller, and succeeds against the promoted replica)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

from redis.exceptions import RedisError, ResponseError

from gex_alertd.batching import ScriptBatcher
from gex_alertd.config import RedisConfig, SentinelConfig
from gex_alertd.connections import REDIS_DOWN, connect_config, entries, is_cluster
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
            # the server's own version, whatever it is (Debian 12 has Redis 7, Debian 13 Redis 8)
            assert re.search(rf"^redis {name} .*: ok \(redis \d+\.\d+", out, re.M), out


async def test_commit_enqueue_and_delivery_stay_in_one_slot_on_the_cluster(
    redis_cluster: RedisCluster,
) -> None:
    """On the real cluster: a commit (snapshot + state + alerts in the symbol's outbox), the
    enqueue-once script (heartbeat in the operator outbox) and a channel's delivery (read,
    send, sent marker + XACK) each run; none is refused as cross-slot, and every alert reaches
    the receiver once, for symbols on all three primaries."""
    from gex_alertd import keys
    from gex_alertd.commit import Committer
    from gex_alertd.heartbeat import HeartbeatSender, heartbeat_event
    from gex_alertd.notify.dispatch import Dispatcher
    from tests.notify.support import Receiver, make_config
    from tests.rules.factory import snap
    from tests.rules.helpers import make_rule

    client = connect_config(RedisConfig(cluster=redis_cluster.startup_nodes, retention=None))
    symbols = ["SPY", "QQQ", "IWM", "DIA", "TLT"]
    await client.initialize()
    nodes = {client.get_node_from_key(keys.outbox(s)).name for s in symbols}  # type: ignore[attr-defined]
    assert len(nodes) >= 2, nodes  # the test means something only across primaries
    rx = await Receiver().start()
    cfg = make_config({"ops": {"type": "webhook", "url": rx.url}}, "redis://unused")
    rule = make_rule(type="flip_cross", name="flip", symbols="*", channels=["ops"])
    committer = Committer(client, [rule], cfg.redis)
    d = Dispatcher(client, cfg, consumer="t1")
    await d.start()
    try:
        await client.delete(*[keys.outbox(s) for s in symbols])
        for s in symbols:
            below = snap(symbol=s, at=0, spot=99.0, flip=100.0)
            above = snap(symbol=s, at=1, spot=101.0, flip=100.0)
            assert (await committer.commit(below, None)).stored
            assert len((await committer.commit(above, None)).alerts) == 1
            d.poke(s)
        beat = heartbeat_event("host:a", 1_795_000_000_000, 60, polled=5, alerts=5)
        assert await HeartbeatSender(client).send(beat, "ops")
        await rx.wait_for(len(symbols) + 1)

        async def acked() -> bool:
            return (await d.health())["ops"]["pending"] == 0

        await eventually(acked, "every alert acked")
        assert len(rx.ids()) == len(set(rx.ids())) == len(symbols) + 1
        for s in symbols:
            [(_eid, fields)] = entries(await client.xrange(keys.outbox(s)))
            sent = keys.sent_marker(s, fields[b"id"].decode(), "ops")
            assert await client.exists(sent)
    finally:
        await d.stop()
        await rx.stop()
        await client.aclose()
