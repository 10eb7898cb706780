"""Commands written as RESP bytes packed by us, on one pooled connection, their replies read raw.

redis-py packs every argument of every command anew and runs its pipeline bookkeeping per call:
for an XREADGROUP over 256 outbox streams that is ~0.3 ms of CPU, 20 of them in every 2 s
sweep at 5,000 symbols (~7.5 ms a sweep, ~2.5 % of the daemon's CPU there). A command sent
again with the same arguments is packed once by its caller and kept as bytes; several commands
go in one write and their replies come back in order, one round trip for all.

Replies are as the connection's parser gives them (RESP2: lists and bytes, no redis-py response
callbacks); an error reply is returned in its place as the exception, and the rest are still
read, so the connection stays in step. A failure of the connection fails the whole exchange:
the client's retry policy sends it again (the caller's commands must allow that, as redis-py's
own retries assume), and a connection that failed is dropped, never reused half-read.
One node only: a Redis Cluster routes each command by its keys' slot (redis-py's cluster client
does that; callers keep it for clusters).
"""

from __future__ import annotations

import asyncio
import math
import weakref
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.sentinel import SentinelConnectionPool
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError


def bulk(arg: bytes | str | int) -> bytes:
    """One argument as a RESP bulk string: bytes as they are, str as UTF-8, int in decimal;
    anything else is a caller's bug (a bool or a float would go as its Python repr)."""
    if isinstance(arg, bytes):
        raw = arg
    elif isinstance(arg, str):
        raw = arg.encode()
    elif isinstance(arg, int) and not isinstance(arg, bool):
        raw = str(arg).encode()
    else:
        raise TypeError(f"command argument of type {type(arg).__name__}: pass bytes, str or int")
    return b"$%d\r\n%s\r\n" % (len(raw), raw)


def pack(*args: bytes | str | int) -> bytes:
    """One command as RESP: an array of bulk strings."""
    return b"*%d\r\n" % len(args) + b"".join(bulk(a) for a in args)


async def exchange(
    redis: aioredis.Redis, payload: bytes, expected: int, what: str = "command(s)"
) -> list[Any]:
    """Write `payload` (`expected` packed commands) and read their `expected` replies, in
    order, on one connection of the client's pool (kept for the next exchange: `_kept`), under
    the client's retry policy; `what` names the commands in the timeout's message."""

    async def attempt() -> list[Any]:
        replies: list[Any] = []
        # one deadline (the socket timeout) for the write and all the replies, not one timer per
        # reply (on Python 3.11 each is three getpid() system calls); `math.inf`: read_response
        # sets none of its own, and cancelled by ours it drops the connection as its own would
        timeout_s = conn.socket_timeout
        sent = False
        try:
            async with asyncio.timeout(timeout_s):
                # with a socket timeout set, redis-py writes through asyncio.wait_for: a Task,
                # a timer and a loop turn per exchange; the deadline above bounds the write
                conn.socket_timeout = None
                try:
                    await conn.send_packed_command(payload, check_health=False)
                finally:
                    conn.socket_timeout = timeout_s
                sent = True
                for _ in range(expected):
                    try:
                        replies.append(await conn.read_response(timeout=math.inf))
                    except ResponseError as exc:  # read whole: the connection stays in step
                        replies.append(exc)
        except TimeoutError:  # redis-py's own, which the client's retry policy knows
            # the deadline covers the connect (when the pool's connection was closed) and the
            # write too: say which part did not finish
            raise RedisTimeoutError(
                f"no reply from Redis at {_where(conn)} to {expected - len(replies)} of "
                f"{expected} {what} within {timeout_s} s"
                if sent
                else f"could not connect to or write to Redis at {_where(conn)} within "
                f"{timeout_s} s ({expected} {what} not sent)"
            ) from None
        return replies

    async def reconnect(_error: Exception) -> None:
        await conn.disconnect()

    pool = redis.connection_pool
    idle = _kept.get(pool)
    if idle is None:
        idle = _kept[pool] = [] if keeps(pool) else _NOT_KEPT
    conn = idle.pop() if idle else await pool.get_connection()
    try:
        out: list[Any] = await conn.retry.call_with_retry(attempt, reconnect)
    except BaseException:
        await conn.disconnect()
        await pool.release(conn)  # the pool connects it again when it is next taken
        raise
    if idle is not _NOT_KEPT and len(idle) < KEPT_MAX:
        idle.append(conn)
    else:
        await pool.release(conn)
    return out


# Connections an exchange gives back are kept here for the next one, up to KEPT_MAX per pool
# (as many as ran at once): the pool's checkout and return (a lock, a timeout, a readiness
# probe of the socket) cost ~16 us of CPU an exchange, ~40 % of one, and every commit batch
# and alert makes one. A kept connection is one that finished its exchange whole (every reply
# read), so it is as ready as the probe would find it; one the server closed meanwhile fails
# its next write or read, and the retry policy connects it again (what a dead pooled
# connection did too). The pool still counts them as in use, and closes them with the rest.
KEPT_MAX = 4
_kept: weakref.WeakKeyDictionary[Any, list[Any]] = weakref.WeakKeyDictionary()
_NOT_KEPT: list[Any] = []  # a pool whose connections go back to it (`keeps`); never appended to


def keeps(pool: Any) -> bool:
    """Whether an exchange keeps `pool`'s connections. Not a Sentinel-managed pool's: when it
    learns of a new primary it drops its idle connections so they reach that one, which kept
    connections would miss (a read-only exchange would go on reading the demoted one)."""
    return not isinstance(pool, SentinelConnectionPool)


def kept(redis: aioredis.Redis) -> list[Any]:
    """The connections kept for `redis`'s next exchanges (tests look at them)."""
    return list(_kept.get(redis.connection_pool, ()))


def _where(conn: Any) -> str:
    """The server a connection talks to, for an error message: host:port, or a unix socket's
    path (never the URL: it may carry a password)."""
    host = getattr(conn, "host", None)
    if host is not None:
        return f"{host}:{getattr(conn, 'port', '?')}"
    return str(getattr(conn, "path", "?"))
