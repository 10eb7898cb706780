"""The Redis connection: one client per process, retrying transient failures with backoff."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, cast

import redis.asyncio as aioredis
import structlog
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import EqualJitterBackoff
from redis.exceptions import (
    AuthenticationError,
    AuthorizationError,
    NoPermissionError,
    SlotNotCoveredError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gex_alertd import redaction

if TYPE_CHECKING:
    from gex_alertd.config import RedisConfig

log = structlog.get_logger()

# a cluster slot without a serving primary (between a primary's death and its replica's
# promotion) is an outage of that slot like any other: the work stays pending and is retried
REDIS_DOWN = (
    RedisConnectionError, RedisTimeoutError, SlotNotCoveredError, ConnectionError, OSError
)  # fmt: skip

# redis-py types a reply for every client setting: str or bytes (decode_responses), dicts for RESP3
# without legacy_responses, None inside a pipeline. Our clients keep the defaults, so a stream entry
# is its id and its fields, all bytes; these name that shape where a reply is read.
Fields = dict[bytes, bytes]
StreamEntry = tuple[bytes, Fields]


def entries(reply: object) -> list[StreamEntry]:
    """An XRANGE or XREVRANGE reply."""
    return cast("list[StreamEntry]", reply)


def as_str(value: Any) -> str:
    """A reply value as text (the clients here leave replies as bytes)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def hash_fields(reply: object) -> Fields:
    """An HGETALL reply."""
    return cast(Fields, reply)


def read_entries(reply: object) -> list[tuple[bytes, list[StreamEntry]]]:
    """An XREAD or XREADGROUP reply: each stream that had entries, with them."""
    return cast("list[tuple[bytes, list[StreamEntry]]]", reply)


# Redis refusing our credentials: a configuration problem, never an outage to ride out (redis-py
# makes AuthenticationError a ConnectionError, so it was retried for 30 s and exited 1)
AUTH_REFUSED = (AuthenticationError, AuthorizationError, NoPermissionError)


class RedisAuthRefused(Exception):
    """Redis refused the credentials in `redis.url` (exit 2, like any bad config)."""


def describe_redis_error(exc: BaseException) -> str:
    """One line for an operator: the reason Redis gave, or what kind of failure it was (a
    bare TimeoutError prints as nothing)."""
    text = str(exc).strip()
    if isinstance(exc, AUTH_REFUSED):
        if "HELLO must be called" in text or "NOAUTH" in text or "required" in text.lower():
            return (
                "authentication required: the server has a password and redis.url gives none "
                "(put it in the URL's user-info part, e.g. from ${REDIS_PASSWORD})"
            )
        return f"authentication refused: {text or type(exc).__name__} (check redis.url)"
    if isinstance(exc, TimeoutError | RedisTimeoutError) and not text:
        return "no answer in time (timeout)"
    return text or type(exc).__name__


class _Retry(Retry):
    """redis-py's retry, minus refused credentials: retrying a wrong password only delays the
    error (and a missing one surfaced as a bare timeout)."""

    async def call_with_retry(  # same call, narrower retryable
        self, do: Any, fail: Any, is_retryable: Any = None, with_failure_count: bool = False
    ) -> Any:
        def retryable(error: Exception) -> bool:
            if isinstance(error, AUTH_REFUSED):
                return False
            return is_retryable is None or bool(is_retryable(error))

        return await super().call_with_retry(do, fail, retryable, with_failure_count)


MAX_CONNECTIONS = 64
POOL_WAIT_S = 30.0


def _retry() -> _Retry:
    return _Retry(EqualJitterBackoff(cap=0.5, base=0.05), retries=4)


def connect(url: str, *, client_name: str = "gex-alertd") -> aioredis.Redis:
    # Each command retries a few times over ~1.5 s, which rides out a Redis restart with its
    # AOF; longer outages surface to the caller, which backs off and keeps its work pending.
    # A blocking pool: with thousands of symbols on one tick more commands are in flight than
    # connections, and they wait for one; the default pool raised "Too many connections" (a
    # ConnectionError, so it looked like Redis was down: 783 commits deferred in 40 s at 5,000
    # symbols in bench_scale).
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=MAX_CONNECTIONS,
        timeout=POOL_WAIT_S,
        socket_timeout=5,
        socket_connect_timeout=2,
        health_check_interval=15,
        retry=_retry(),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        client_name=client_name,
    )
    return aioredis.Redis.from_pool(pool)


def connect_config(rc: RedisConfig, *, client_name: str = "gex-alertd") -> aioredis.Redis:
    """The client `redis:` names: one node (`url`), a Redis Cluster or a Sentinel-watched
    primary. The same retry policy everywhere, so a failover looks like a restart: commands
    retry briefly, then the caller keeps its work pending and backs off.

    Typed as `Redis` for every caller: the cluster client offers the same commands (each
    routed by its keys' slot, MOVED/ASK followed, the slot map refreshed after a failover);
    what it lacks (a multi-key command across slots) the key layout never asks for."""
    from gex_alertd.config import split_host_port

    if rc.cluster is not None:
        cluster = RedisCluster(
            startup_nodes=[ClusterNode(*split_host_port(n)) for n in rc.cluster],
            username=rc.username,
            password=rc.password,
            max_connections=MAX_CONNECTIONS,
            socket_timeout=5,
            socket_connect_timeout=2,
            retry=_retry(),
            client_name=client_name,
        )
        return cast(aioredis.Redis, cluster)
    if rc.sentinel is not None:
        s = rc.sentinel
        sentinel = Sentinel(
            [split_host_port(n) for n in s.nodes],
            sentinel_kwargs={
                "password": s.sentinel_password,
                "socket_timeout": 2,
                "socket_connect_timeout": 2,
            },
            socket_timeout=5,
            socket_connect_timeout=2,
            retry=_retry(),
            retry_on_error=[RedisConnectionError, RedisTimeoutError],
        )
        primary: aioredis.Redis = sentinel.master_for(
            s.master,
            db=s.db,
            username=s.username,
            password=s.password,
            client_name=client_name,
            health_check_interval=15,
        )
        return primary
    assert rc.url is not None
    return connect(rc.url, client_name=client_name)


def open_client(where: str | RedisConfig, *, client_name: str = "gex-alertd") -> aioredis.Redis:
    """A client for a URL (a command's `--redis` override) or for the `redis:` config."""
    if isinstance(where, str):
        return connect(where, client_name=client_name)
    return connect_config(where, client_name=client_name)


def describe(rc: RedisConfig) -> str:
    """Where `redis:` points, for a log line or an error (credentials redacted)."""
    if rc.cluster is not None:
        return "cluster " + ",".join(rc.cluster)
    if rc.sentinel is not None:
        return f"sentinel {rc.sentinel.master} via " + ",".join(rc.sentinel.nodes)
    return redaction.redact(rc.url or "")


def is_cluster(redis: object) -> bool:
    return isinstance(redis, RedisCluster)


async def wait_until_reachable(
    redis: aioredis.Redis, url: str, *, stop: asyncio.Event | None = None, max_wait: float = 30.0
) -> None:
    """Ping with backoff until Redis answers; raise after max_wait (0 = forever). Returns
    without an answer once `stop` is set (the caller checks it)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max_wait if max_wait else None
    delay = 0.1
    while True:
        try:
            await redis.ping()
            return
        except AUTH_REFUSED as exc:
            raise RedisAuthRefused(
                f"Redis at {redaction.redact(url)}: {redaction.redact(describe_redis_error(exc))}"
            ) from None
        except REDIS_DOWN as exc:
            if deadline is not None and loop.time() + delay > deadline:
                raise ConnectionError(
                    f"Redis at {redaction.redact(url)} unreachable: {redaction.redact(str(exc))}"
                ) from None
            log.warning("redis unreachable, retrying", error=str(exc), retry_in=round(delay, 2))
            if stop is not None and stop.is_set():
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


def entry_key(entry_id: bytes | str) -> tuple[int, int]:
    """A stream entry ID as (ms, seq), for ordering entries of several streams by time."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


async def key_types(redis: aioredis.Redis, names: list[str]) -> dict[str, str]:
    """Each key's type (pipelined TYPE, one per key; "none" for a missing one)."""
    out: dict[str, str] = {}
    for i in range(0, len(names), 1000):
        async with redis.pipeline(transaction=False) as pipe:
            for name in names[i : i + 1000]:
                pipe.type(name)
            replies = await pipe.execute()
        out.update(zip(names[i : i + 1000], map(as_str, replies), strict=True))
    return out


async def stream_tops(redis: aioredis.Redis, names: list[str]) -> dict[str, str]:
    """The newest entry ID of each stream ("0-0" for one that is empty or missing): a reader
    that starts from now reads after these. One XREVRANGE per stream, pipelined (a cluster
    routes each to its slot)."""
    async with redis.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.xrevrange(name, count=1)
        tops = await pipe.execute()
    out = {}
    for name, top in zip(names, tops, strict=True):
        batch = entries(top)
        out[name] = batch[0][0].decode() if batch else "0-0"
    return out


async def read_slot_groups(
    redis: aioredis.Redis, groups: list[dict[str, str]], *, count: int, block_ms: int
) -> list[tuple[bytes, list[StreamEntry]]]:
    """XREAD of several streams from their cursors; `groups` holds streams that share a hash
    slot (a symbol's keys). On one node (or Sentinel's primary): one XREAD BLOCK over them
    all. On a cluster, where one command cannot span slots: one XREAD per group, pipelined,
    WITHOUT block (a blocking read would hold up the node's pipeline): the caller pauses
    when nothing came."""
    if not any(groups):
        return []
    if not is_cluster(redis):
        merged = {name: cursor for group in groups for name, cursor in group.items()}
        return read_entries(await redis.xread(merged, block=block_ms, count=count))  # type: ignore[arg-type]  # str cursors
    async with redis.pipeline(transaction=False) as pipe:
        for group in groups:
            if group:
                pipe.xread(group, count=count)  # type: ignore[arg-type]  # str cursors
        replies = await pipe.execute()
    return [item for reply in replies for item in read_entries(reply or [])]
