"""How a command that works on Redis ends when Redis fails it.

`outbox`, `silence`, `replay`, `outcomes`, `migrate` and `tail` run their work through
`run_on_redis`: Redis down, restarting for longer than the client's retries, out of memory, a
key of another type, or refusing `redis.url`'s credentials is one line on stderr naming the
Redis (credentials redacted) and the reason, never a traceback; exit 2 when the credentials are
refused (a bad config, as for `run` and `check`: README "Configuration"), 1 for the rest.

A WRONGTYPE reply does not say which key: the keys the commands read are looked at (TYPE) and
the ones holding another type than gex-alertd writes are named, so the operator knows what to
rename or delete. File errors (`--input`, `--out`, a plot) stay the commands' own: they are
OSErrors, which this module leaves alone.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine, Iterable
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click
from redis.exceptions import RedisClusterException, RedisError

from gex_alertd import keys, redaction
from gex_alertd.connections import (
    AUTH_REFUSED,
    describe,
    describe_redis_error,
    key_types,
    open_client,
)
from gex_alertd.redis_errors import is_wrongtype

if TYPE_CHECKING:
    from gex_alertd.config import RedisConfig

T = TypeVar("T")
Target = tuple[str, str | None]  # (symbol, expiry)

# what gex-alertd writes at the keys the commands read
_FIXED = {
    keys.DEAD: "stream",
    keys.SILENCED: "stream",
    keys.SILENCES: "hash",
    keys.LEGACY_ALERTS: "stream",
    keys.outbox(keys.OPS_SYMBOL): "stream",
}


def where_of(redis: str | RedisConfig) -> str:
    """The Redis for an error line: a `--redis` URL or the `redis:` config, redacted."""
    return redaction.redact(redis) if isinstance(redis, str) else describe(redis)


def run_on_redis(
    work: Coroutine[Any, Any, T], redis: str | RedisConfig, targets: Iterable[Target] = ()
) -> T:
    """`asyncio.run(work)`; Redis failing it ends the command (module docstring). `targets`:
    the watch entries whose keys a WRONGTYPE may be about."""
    try:
        return asyncio.run(work)
    except AUTH_REFUSED as exc:
        fail(redis, describe_redis_error(exc), 2)
    except (RedisError, RedisClusterException, TimeoutError) as exc:  # TimeoutError: asyncio's
        reason = describe_redis_error(exc)
        if is_wrongtype(exc):
            reason += _wrong_keys(redis, list(targets))
        fail(redis, reason, 1)


def fail(redis: str | RedisConfig, reason: str, code: int) -> NoReturn:
    click.echo(f"error: Redis at {where_of(redis)}: {redaction.redact(reason)}", err=True)
    sys.exit(code)


def _wrong_keys(redis: str | RedisConfig, targets: list[Target]) -> str:
    expected = dict(_FIXED)
    for symbol, expiry in targets:
        expected[keys.snap(symbol, expiry)] = "stream"
        expected[keys.outbox(symbol)] = "stream"
        expected[keys.outcomes(symbol)] = "hash"

    async def look() -> dict[str, str]:
        client = open_client(redis, client_name="gex-alertd-diagnose")
        try:
            return await key_types(client, sorted(expected))
        finally:
            await client.aclose()

    try:
        found = asyncio.run(look())
    except (RedisError, RedisClusterException, OSError):  # gone meanwhile: the reply alone
        return ""
    wrong = [f"{k} is a {t}, not a {expected[k]}" for k, t in found.items()
             if t not in ("none", expected[k])]  # fmt: skip
    if not wrong:
        return " (a key of another type than gex-alertd writes)"
    return " (" + "; ".join(wrong) + ": made by hand or by another program? rename or delete it)"
