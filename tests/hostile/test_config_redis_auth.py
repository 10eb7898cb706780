"""Redis refusing the credentials (issue 17 item 12), against a real redis-server started with
`--requirepass`: `run` exits 2 at once (a configuration problem: systemd's
RestartPreventExitStatus=2 stops the restart loop) and `check` prints the reason."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hostile.support_config import gex_alertd
from tests.support import process
from tests.support.redis_server import RedisServer

PASSWORD = "hostile-" + "p" * 16


@pytest.fixture
def locked_redis(tmp_path: Path) -> Iterator[RedisServer]:
    args = ("--requirepass", PASSWORD)
    yield from process.serving(lambda: RedisServer(tmp_path / "redis", extra_args=args))


def write_config(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(f'redis: {{url: "{url}"}}\nwatch: {{symbols: [SPY]}}\nops: {{listen: null}}\n')
    return path


@pytest.mark.parametrize("userinfo", ["", ":wrong-password@"], ids=["missing", "wrong"])
def test_run_exits_2_when_redis_refuses_the_password(
    tmp_path: Path, locked_redis: RedisServer, userinfo: str
) -> None:
    path = write_config(tmp_path, f"redis://{userinfo}127.0.0.1:{locked_redis.port}/0")
    proc = gex_alertd("run", "--config", str(path), "--no-uvloop")
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, output
    assert "Traceback" not in output
    assert "authentication" in output and "redis unreachable, retrying" not in output, output
    assert "wrong-password" not in output


def test_check_prints_why_redis_refused(tmp_path: Path, locked_redis: RedisServer) -> None:
    """Exit 2, a bad config, as `run` and the README say (it was 1, the status of an outage)."""
    missing = write_config(tmp_path, f"redis://127.0.0.1:{locked_redis.port}/0")
    proc = gex_alertd("check", "--config", str(missing))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "authentication required: the server has a password and redis.url gives none" in (
        proc.stderr
    ), proc.stderr

    wrong = write_config(tmp_path, f"redis://:wrong-password@127.0.0.1:{locked_redis.port}/0")
    proc = gex_alertd("check", "--config", str(wrong))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "authentication refused: invalid username-password pair" in proc.stderr, proc.stderr
    assert "wrong-password" not in proc.stdout + proc.stderr


def test_the_right_password_passes(tmp_path: Path, locked_redis: RedisServer) -> None:
    good = write_config(tmp_path, f"redis://:{PASSWORD}@127.0.0.1:{locked_redis.port}/0")
    proc = gex_alertd("check", "--config", str(good))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert PASSWORD not in proc.stdout + proc.stderr
