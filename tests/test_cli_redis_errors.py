"""Every command that works on Redis, when Redis fails it (daemon/cli_redis.py): down, refusing
the credentials, a key of another type. One line naming the Redis (credentials redacted) and
the reason, never a traceback; exit 2 for refused credentials (a bad config, as `run`, `check`
and `migrate` already did), 1 for the rest; a WRONGTYPE names the key. Real commands as
subprocesses against real redis-servers."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as sync_redis

from gex_alertd import keys
from tests.support import process
from tests.support.cli_config import cli_config
from tests.support.redis_server import RedisServer, free_port
from tests.support.wait import WAIT_S

PASSWORD = "pw-4f1c9e7a2b"  # the test server's, must never be printed

COMMANDS = [
    ["outbox", "list"],
    ["outbox", "retry", "--all"],
    ["silence", "list"],
    ["silence", "add", "--rule", "r", "--for", "1h"],
    ["replay", "--no-progress"],
    ["outcomes", "--alerts", "live", "--horizons", "5m"],
    ["migrate"],
    ["tail", "SPY"],
    ["tail", "--alerts"],
]


def _gex(cfg: Path, command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gex_alertd", command[0], "-c", str(cfg), *command[1:]],
        capture_output=True, text=True, timeout=WAIT_S, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def locked_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    yield from process.serving(
        lambda: RedisServer(
            tmp_path_factory.mktemp("locked"), extra_args=("--requirepass", PASSWORD)
        )
    )


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_redis_down_is_one_line_and_exit_1(tmp_path: Path, command: list[str]) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    done = _gex(cli_config(tmp_path, url), command)
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith(f"error: Redis at {url}: "), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_refused_credentials_are_a_bad_config_exit_2(
    tmp_path: Path, locked_redis: RedisServer, command: list[str]
) -> None:
    url = f"redis://:wrong-{PASSWORD}@127.0.0.1:{locked_redis.port}/0"
    done = _gex(cli_config(tmp_path, url), command)
    assert done.returncode == 2, done.stderr
    assert "authentication refused" in done.stderr and "check redis.url" in done.stderr
    assert PASSWORD not in done.stdout + done.stderr
    assert "Traceback" not in done.stderr


def test_a_missing_password_says_what_to_do(tmp_path: Path, locked_redis: RedisServer) -> None:
    done = _gex(cli_config(tmp_path, locked_redis.url), ["tail", "--alerts"])
    assert done.returncode == 2, done.stderr
    assert "the server has a password and redis.url gives none" in done.stderr


@pytest.mark.parametrize(
    ("command", "key", "kind"),
    [
        (["outbox", "list"], keys.DEAD, "stream"),
        (["silence", "list"], keys.SILENCES, "hash"),
        (["tail", "SPY", "--last", "1"], keys.snap("SPY"), "stream"),
        (["replay", "--no-progress"], keys.snap("SPY"), "stream"),
    ],
    ids=lambda v: v[0] if isinstance(v, list) else None,
)
def test_a_key_of_another_type_is_named(
    tmp_path: Path, redis_url: str, command: list[str], key: str, kind: str
) -> None:
    client = sync_redis.Redis.from_url(redis_url)
    try:
        client.flushall()
        client.set(key, "by hand")
        done = _gex(cli_config(tmp_path, redis_url), command)
    finally:
        client.close()
    assert done.returncode == 1, done.stderr
    assert "WRONGTYPE" in done.stderr and f"{key} is a string, not a {kind}" in done.stderr
    assert "Traceback" not in done.stderr
