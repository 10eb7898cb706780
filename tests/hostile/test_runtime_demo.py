"""The `make run` demo's private Redis (issue 17 item 14, second half): it had no password and
its AOF files were world-readable (0644 in a 0755 directory). scripts/run-demo.sh itself, with
its run directory and port moved into the test's own."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import stat
import sys
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis.exceptions import AuthenticationError

from gex_alertd import keys
from tests.reliability.support import clean_env
from tests.support.redis_server import INSTALL_HINT, free_port
from tests.support.wait import WAIT_S, eventually

ROOT = Path(__file__).resolve().parents[2]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_demo_redis_has_a_password_and_owner_only_files(tmp_path: Path) -> None:
    if shutil.which("redis-server") is None:
        pytest.fail(INSTALL_HINT, pytrace=False)
    run = tmp_path / "run"
    config = tmp_path / "demo.yaml"
    text = (
        (ROOT / "config.example.yaml").read_text().replace("listen: 127.0.0.1:9108", "listen: null")
    )
    config.write_text(text)
    shutil.copytree(ROOT / "rules.d", tmp_path / "rules.d")
    port = free_port()
    env = clean_env(
        RUN_DIR=str(run),
        DEMO_REDIS_PORT=str(port),
        CONFIG=str(config),
        GEX_ALERTD=str(Path(sys.executable).with_name("gex-alertd")),
    )
    env.pop("REDIS_URL", None)
    log = tmp_path / "demo.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            "bash", str(ROOT / "scripts" / "run-demo.sh"),
            stdout=out, stderr=asyncio.subprocess.STDOUT, env=env, start_new_session=True,
        )  # fmt: skip
    password = ""
    try:

        def started() -> bool:
            assert proc.returncode is None, log.read_text(errors="replace")[-3000:]
            return "gex-alertd started" in log.read_text(errors="replace")

        await eventually(started, "the demo daemon started")
        password = (run / "redis.password").read_text()
        assert len(password) >= 24 and password.isalnum()

        # Redis refuses a client without the password; the daemon got in with it
        anonymous = aioredis.Redis(port=port)
        try:
            with pytest.raises(AuthenticationError):
                await anonymous.ping()
        finally:
            await anonymous.aclose()
        authed = aioredis.Redis(port=port, password=password)
        try:

            async def member() -> bool:
                return bool(await authed.exists(keys.MEMBERS))

            await eventually(member, "the daemon's membership")

            async def aof_written() -> bool:
                return any(p.is_file() for p in (run / "redis").rglob("*.aof"))

            await eventually(aof_written, "Redis's AOF files")
        finally:
            await authed.aclose()

        # owner only: directories 0700, files 0600
        assert mode(run) == 0o700
        for path in [run / "redis.password", *run.rglob("*")]:
            want = 0o700 if path.is_dir() else 0o600
            assert mode(path) == want, f"{path.relative_to(run)}: {oct(mode(path))}"
        assert "127.0.0.1" in (run / "credentials" / "REDIS_URL").read_text()
    finally:
        if proc.returncode is None:
            os.killpg(proc.pid, signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), WAIT_S)
    output = log.read_text(errors="replace")
    assert password and password not in output
    assert "gex-alertd stopped" in output

    def redis_gone() -> bool:  # the script stops its Redis on the way out
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            return True
        return False

    await eventually(redis_gone, "the demo's redis-server stopped")
