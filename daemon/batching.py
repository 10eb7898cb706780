"""Several script calls in one pipelined round trip, each still its own atomic script.

The commit of one snapshot is one Lua script call; at hundreds of snapshots a second the cost
was the round trip and redis-py's per-command machinery, not Redis. Callers `await call(...)`
as if alone; calls arriving together are sent as one non-transactional pipeline of EVALSHAs.
No timer: a call goes out at the end of the current loop iteration when nothing is in flight
(a lone commit waits for nobody), and calls arriving while a batch is in flight go together
when it returns, or as soon as `max_batch` of them are waiting: the busier Redis is, the larger
the batches. Each script still runs atomically on its own, and gets its own reply or error:
  - a script error (or NOSCRIPT after a Redis restart: the script is loaded and only those
    calls are sent again) goes to that caller alone;
  - a lost connection fails every call of the batch with the connection error, which the
    poller treats like any Redis outage (the snapshot stays pending; the commit is idempotent,
    so a batch that did run before the connection dropped is harmless to send again).
On a Redis Cluster the calls of a batch belong to several slots: the batch goes as redis-py's
cluster pipeline, one pipeline per node holding the slots (sent together), which follows
MOVED/ASK and refreshes the slot map after a failover; each script still touches one slot.

With `wait_replicas` (redis.wait_replicas) each batch ends with `WAIT n timeout` on the same
connection (on a cluster: one per node, behind that node's scripts): replication is
asynchronous, and a commit only the dying primary held would be lost with its alerts. A batch
whose WAIT did not reach n replicas is not acknowledged: every call of it fails with
NotReplicated, the snapshots stay pending and are committed again (a no-op `repeat` when the
first write survived, a fresh commit when it did not: the as_of-derived ids keep both exact).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, RedisError

from gex_alertd import packed
from gex_alertd.connections import is_cluster
from gex_alertd.ops import metrics

MAX_BATCH = 32


class NotReplicated(RedisError):
    """The batch ran on the primary, but WAIT saw fewer replicas acknowledge it than asked:
    not acknowledged, the caller keeps its work pending and retries."""


def _acked(reply: object) -> int:
    """WAIT's reply: the replicas that acknowledged; an error (a replica refusing WAIT) is
    none."""
    return reply if isinstance(reply, int) and not isinstance(reply, bool) else 0


class _Call:
    __slots__ = ("args", "future", "keys")

    def __init__(self, keys: list[Any], args: Any, future: asyncio.Future[Any]) -> None:
        self.keys = keys
        self.args = args
        self.future = future


class ScriptBatcher:
    def __init__(
        self,
        redis: aioredis.Redis,
        script: str,
        *,
        max_batch: int = MAX_BATCH,
        wait_replicas: int = 0,
        wait_timeout_ms: int = 1000,
        prepare: Callable[[list[Any]], list[Any]] | None = None,
    ) -> None:
        self.redis = redis
        # the calls' ARGV as given -> as sent, for the whole batch at once (the commit builds
        # its batch's arguments together); it runs when the batch goes; an exception in the
        # place of one call's ARGV fails that call alone, and if it raises, every call of the
        # batch fails with that error
        self.prepare = prepare
        self.script = script
        self.max_batch = max_batch
        self._sha: str | None = None
        self._cluster = is_cluster(redis)
        self.wait_replicas = wait_replicas
        self.wait_timeout_ms = wait_timeout_ms
        self._waiting: list[_Call] = []
        self._scheduled: asyncio.Handle | None = None
        self._flushes: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        # looked up once per loop, not per call: on Python 3.11 each lookup is a getpid()
        # system call, and a commit made several
        loop = self._loop
        if loop is None or loop.is_closed():
            loop = self._loop = asyncio.get_running_loop()
        return loop

    async def call(self, keys: list[Any], args: Any) -> Any:
        """Run the script with these KEYS and ARGV (a list of bytes, str or int; with
        `prepare`, anything it turns into one) in the next batch; its reply."""
        fut: asyncio.Future[Any] = self._running_loop().create_future()
        self._waiting.append(_Call(keys, args, fut))
        if len(self._waiting) >= self.max_batch:
            self._flush()
        elif not self._flushes:
            self._schedule()
        return await fut

    def _schedule(self) -> None:
        # at the end of this loop iteration: calls made in the same iteration go together
        if self._scheduled is None:
            self._scheduled = self._running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        if self._scheduled is not None:
            self._scheduled.cancel()
            self._scheduled = None
        batch, self._waiting = self._waiting, []
        if not batch:
            return
        task = self._running_loop().create_task(self._send(batch))
        self._flushes.add(task)
        task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._flushes.discard(task)
        if self._waiting and not self._flushes:
            self._schedule()  # what queued up while the batch was out goes now

    async def _send(self, batch: list[_Call]) -> None:
        try:
            if self.prepare is not None:
                batch = self._prepared(batch)
                if not batch:
                    return
            replies = await self._run(batch)
        except BaseException as exc:  # the connection, or a cancellation at shutdown
            for c in batch:
                if not c.future.done():
                    c.future.set_exception(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        for c, reply in zip(batch, replies, strict=True):
            if c.future.done():
                continue
            if isinstance(reply, Exception):
                c.future.set_exception(reply)
            else:
                c.future.set_result(reply)

    def _prepared(self, batch: list[_Call]) -> list[_Call]:
        """The calls with their ARGV as `prepare` gives it; a call it gives an exception for
        fails with it at once, alone, and is not sent."""
        assert self.prepare is not None
        kept = []
        for c, args in zip(batch, self.prepare([c.args for c in batch]), strict=True):
            if isinstance(args, BaseException):
                if not c.future.done():
                    c.future.set_exception(args)
                continue
            c.args = args
            kept.append(c)
        return kept

    async def _run(self, batch: list[_Call]) -> list[Any]:
        metrics.COMMIT_BATCH.observe(len(batch))
        if self._sha is None:
            self._sha = await self.redis.script_load(self.script)
        replies, acked = await self._pipelined(batch)
        missing = [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)]
        if missing:  # Redis restarted (or SCRIPT FLUSH): load it once, resend just those
            self._sha = await self.redis.script_load(self.script)
            again, acked_again = await self._pipelined([batch[i] for i in missing])
            acked = min(acked, acked_again)
            for i, reply in zip(missing, again, strict=True):
                replies[i] = reply
        if acked < self.wait_replicas:
            metrics.COMMIT_NOT_REPLICATED.inc(len(batch))
            refused = NotReplicated(
                f"WAIT: {acked} of {self.wait_replicas} replica(s) acknowledged the commit "
                f"within {self.wait_timeout_ms} ms"
            )
            replies = [r if isinstance(r, Exception) else refused for r in replies]
        return replies

    async def _pipelined(self, batch: list[_Call]) -> tuple[list[Any], int]:
        """The replies, and how many replicas acknowledged them (WAIT; wait_replicas when it
        is off)."""
        if self._cluster:
            return await self._cluster_pipelined(batch)
        return await self._packed(batch)

    def _nodes(self, batch: list[_Call]) -> list[Any]:
        """The primaries serving the batch's slots, per the client's slot map."""
        cluster: Any = self.redis  # a RedisCluster under the Redis type (connections.py)
        names: dict[str, Any] = {}
        for c in batch:
            node = cluster.nodes_manager.get_node_from_slot(cluster.keyslot(c.keys[0]))
            names[node.name] = node
        return list(names.values())

    async def _cluster_pipelined(self, batch: list[_Call]) -> tuple[list[Any], int]:
        """Per-node pipelines (redis-py groups the calls by the node serving each call's slot);
        a script's error is its reply, as on one node. WAIT goes to each node behind its
        scripts; if the slot map changed meanwhile (MOVED: a call went elsewhere than its
        WAIT), the batch counts as not replicated."""
        assert self._sha is not None
        nodes = self._nodes(batch) if self.wait_replicas else []
        async with self.redis.pipeline(transaction=False) as pipe:
            for c in batch:
                for arg in c.args:
                    packed.bulk(arg)  # the same argument rule as on one node
                # by name: redis-py blocks pipe.evalsha on a cluster, yet routes EVALSHA by
                # its first key's slot (every key of a commit shares the symbol's hash tag)
                pipe.execute_command("EVALSHA", self._sha, len(c.keys), *c.keys, *c.args)
            for node in nodes:
                pipe.execute_command(
                    "WAIT", self.wait_replicas, self.wait_timeout_ms, target_nodes=node
                )
            out = list(await pipe.execute(raise_on_error=False))
        replies, waits = out[: len(batch)], out[len(batch) :]
        if not nodes:
            return replies, self.wait_replicas
        if [n.name for n in self._nodes(batch)] != [n.name for n in nodes]:
            return replies, 0
        return replies, min(_acked(w) for w in waits)

    async def _packed(self, batch: list[_Call]) -> tuple[list[Any], int]:
        """One write of every EVALSHA, then their replies in order, on one pooled connection.

        Packed here rather than by a redis-py pipeline: its per-argument encoding and per-
        execute bookkeeping cost more than the script itself (~0.1 ms per commit). A reply
        that is an error is that call's (the rest of the batch is read on); a failure of the
        connection fails the batch, and the connection is dropped so the pool never reuses a
        socket left half-read."""
        assert self._sha is not None
        head = b"EVALSHA\r\n$" + str(len(self._sha)).encode() + b"\r\n" + self._sha.encode()
        chunks: list[bytes] = []
        bulk = packed.bulk
        for c in batch:
            chunks.append(b"*%d\r\n$7\r\n%s\r\n" % (3 + len(c.keys) + len(c.args), head))
            for arg in (str(len(c.keys)), *c.keys, *c.args):
                chunks.append(bulk(arg))
        if self.wait_replicas:  # on this connection, behind its scripts: WAIT covers them
            wait = (b"WAIT", str(self.wait_replicas), str(self.wait_timeout_ms))
            chunks.append(packed.pack(*wait))
        payload = b"".join(chunks)

        expected = len(batch) + (1 if self.wait_replicas else 0)
        # the client's own retry policy (a Redis restart, a socket timeout): sending the whole
        # batch again is safe, every commit in it is idempotent
        replies = await packed.exchange(
            self.redis, payload, expected, "command(s) of a commit batch"
        )
        if not self.wait_replicas:
            return replies, 0
        return replies[:-1], _acked(replies[-1])

    async def drain(self) -> None:
        """Send what is waiting now and wait for every batch in flight (shutdown)."""
        self._flush()
        while self._flushes:
            await asyncio.gather(*self._flushes, return_exceptions=True)
            self._flush()
