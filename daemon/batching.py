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
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, ResponseError

from gex_alertd.connections import is_cluster
from gex_alertd.ops import metrics

MAX_BATCH = 32


def _bulk(arg: object) -> tuple[int, bytes]:
    """An argument as RESP bulk bytes: bytes as they are, str as UTF-8, int in decimal; anything
    else is a caller's bug (a bool or a float would be sent as its Python repr)."""
    if isinstance(arg, bytes):
        raw = arg
    elif isinstance(arg, str):
        raw = arg.encode()
    elif isinstance(arg, int) and not isinstance(arg, bool):
        raw = str(arg).encode()
    else:
        raise TypeError(f"script argument of type {type(arg).__name__}: pass bytes, str or int")
    return len(raw), raw


class _Call:
    __slots__ = ("args", "future", "keys")

    def __init__(self, keys: list[Any], args: list[Any], future: asyncio.Future[Any]) -> None:
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
    ) -> None:
        self.redis = redis
        self.script = script
        self.max_batch = max_batch
        self._sha: str | None = None
        self._cluster = is_cluster(redis)
        self._waiting: list[_Call] = []
        self._scheduled: asyncio.Handle | None = None
        self._flushes: set[asyncio.Task[None]] = set()

    async def call(self, keys: list[Any], args: list[Any]) -> Any:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Call(keys, args, fut))
        if len(self._waiting) >= self.max_batch:
            self._flush()
        elif not self._flushes:
            self._schedule()
        return await fut

    def _schedule(self) -> None:
        # at the end of this loop iteration: calls made in the same iteration go together
        if self._scheduled is None:
            self._scheduled = asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        if self._scheduled is not None:
            self._scheduled.cancel()
            self._scheduled = None
        batch, self._waiting = self._waiting, []
        if not batch:
            return
        task = asyncio.create_task(self._send(batch))
        self._flushes.add(task)
        task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._flushes.discard(task)
        if self._waiting and not self._flushes:
            self._schedule()  # what queued up while the batch was out goes now

    async def _send(self, batch: list[_Call]) -> None:
        try:
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

    async def _run(self, batch: list[_Call]) -> list[Any]:
        metrics.COMMIT_BATCH.observe(len(batch))
        if self._sha is None:
            self._sha = await self.redis.script_load(self.script)
        replies = await self._pipelined(batch)
        missing = [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)]
        if missing:  # Redis restarted (or SCRIPT FLUSH): load it once, resend just those
            self._sha = await self.redis.script_load(self.script)
            again = await self._pipelined([batch[i] for i in missing])
            for i, reply in zip(missing, again, strict=True):
                replies[i] = reply
        return replies

    async def _pipelined(self, batch: list[_Call]) -> list[Any]:
        if self._cluster:
            return await self._cluster_pipelined(batch)
        return await self._packed(batch)

    async def _cluster_pipelined(self, batch: list[_Call]) -> list[Any]:
        """Per-node pipelines (redis-py groups the calls by the node serving each call's slot);
        a script's error is its reply, as on one node."""
        assert self._sha is not None
        async with self.redis.pipeline(transaction=False) as pipe:
            for c in batch:
                for arg in c.args:
                    _bulk(arg)  # the same argument rule as on one node
                # by name: redis-py blocks pipe.evalsha on a cluster, yet routes EVALSHA by
                # its first key's slot (every key of a commit shares the symbol's hash tag)
                pipe.execute_command("EVALSHA", self._sha, len(c.keys), *c.keys, *c.args)
            return list(await pipe.execute(raise_on_error=False))

    async def _packed(self, batch: list[_Call]) -> list[Any]:
        """One write of every EVALSHA, then their replies in order, on one pooled connection.

        Packed here rather than by a redis-py pipeline: its per-argument encoding and per-
        execute bookkeeping cost more than the script itself (~0.1 ms per commit). A reply
        that is an error is that call's (the rest of the batch is read on); a failure of the
        connection fails the batch, and the connection is dropped so the pool never reuses a
        socket left half-read."""
        assert self._sha is not None
        head = b"EVALSHA\r\n$" + str(len(self._sha)).encode() + b"\r\n" + self._sha.encode()
        chunks: list[bytes] = []
        for c in batch:
            chunks.append(b"*%d\r\n$7\r\n%s\r\n" % (3 + len(c.keys) + len(c.args), head))
            for arg in (str(len(c.keys)), *c.keys, *c.args):
                chunks.append(b"$%d\r\n%s\r\n" % _bulk(arg))
        payload = b"".join(chunks)

        async def exchange() -> list[Any]:
            await conn.send_packed_command(payload, check_health=False)
            replies: list[Any] = []
            for _ in batch:
                try:
                    replies.append(await conn.read_response())
                except ResponseError as exc:  # read whole: the connection stays in step
                    replies.append(exc)
            return replies

        async def reconnect(_error: Exception) -> None:
            await conn.disconnect()

        pool = self.redis.connection_pool
        conn = await pool.get_connection()
        try:
            # the client's own retry policy (a Redis restart, a socket timeout): sending the
            # whole batch again is safe, every commit in it is idempotent
            result: list[Any] = await conn.retry.call_with_retry(exchange, reconnect)
            return result
        except BaseException:
            await conn.disconnect()
            raise
        finally:
            await pool.release(conn)

    async def drain(self) -> None:
        """Send what is waiting now and wait for every batch in flight (shutdown)."""
        self._flush()
        while self._flushes:
            await asyncio.gather(*self._flushes, return_exceptions=True)
            self._flush()
