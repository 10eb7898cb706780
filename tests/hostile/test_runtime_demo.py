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
from tests.support.redis_server import INSTALL_HINT, RedisServer, free_port
from tests.support.wait import WAIT_S, eventually

ROOT = Path(__file__).resolve().parents[2]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


class Demo:
    """scripts/run-demo.sh started in a session of its own, as a terminal's job."""

    def __init__(self, tmp: Path, port: int | None = None) -> None:
        self.run = tmp / "run"
        self.log = tmp / "demo.log"
        self.port = port or free_port()
        self.config = tmp / "demo.yaml"
        text = (ROOT / "config.example.yaml").read_text()
        self.config.write_text(text.replace("listen: 127.0.0.1:9108", "listen: null"))
        shutil.copytree(ROOT / "rules.d", tmp / "rules.d")
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, *, until: str = "gex-alertd started") -> asyncio.subprocess.Process:
        if shutil.which("redis-server") is None:
            pytest.fail(INSTALL_HINT, pytrace=False)
        env = clean_env(
            RUN_DIR=str(self.run),
            DEMO_REDIS_PORT=str(self.port),
            CONFIG=str(self.config),
            GEX_ALERTD=str(Path(sys.executable).with_name("gex-alertd")),
        )
        env.pop("REDIS_URL", None)
        with self.log.open("wb") as out:
            self.proc = proc = await asyncio.create_subprocess_exec(
                "bash", str(ROOT / "scripts" / "run-demo.sh"),
                stdout=out, stderr=asyncio.subprocess.STDOUT, env=env, start_new_session=True,
            )  # fmt: skip

        def started() -> bool:
            if until == "exit":
                return proc.returncode is not None
            assert proc.returncode is None, self.output()[-3000:]
            return until in self.output()

        await eventually(started, f"the demo: {until}")
        return proc

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
        if self.proc is not None:
            await asyncio.wait_for(self.proc.wait(), WAIT_S)

    def redis_gone(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            return True
        return False


def _daemon_of(script: int) -> int:
    """The pid of the script's gex-alertd."""
    children = [int(c) for t in Path(f"/proc/{script}/task").iterdir()
                for c in (t / "children").read_text().split()]  # fmt: skip
    [daemon] = [c for c in children if b"gex-alertd" in Path(f"/proc/{c}/cmdline").read_bytes()]
    return daemon


def _exists(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


async def test_demo_redis_has_a_password_and_owner_only_files(tmp_path: Path) -> None:
    demo = Demo(tmp_path)
    run, port = demo.run, demo.port
    password = ""
    try:
        await demo.start()
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
        await demo.stop()
    output = demo.output()
    assert password and password not in output
    assert "gex-alertd stopped" in output
    await eventually(demo.redis_gone, "the demo's redis-server stopped")  # on the way out


async def test_a_term_forwarded_twice_stops_redis_only_after_the_daemon(tmp_path: Path) -> None:
    # `make run` stopped with SIGTERM to its process group: make forwards TERM to the script on
    # top of the group's own, the second one cut the script's wait for the daemon short, and the
    # script stopped Redis under the daemon still draining its outbox into it
    demo = Demo(tmp_path)
    try:
        proc = await demo.start()
        daemon = _daemon_of(proc.pid)
        os.killpg(proc.pid, signal.SIGTERM)
        await eventually(lambda: '"stopping"' in demo.output(), "the daemon stopping")
        os.kill(proc.pid, signal.SIGTERM)  # make's, after the group's
        await asyncio.wait_for(proc.wait(), WAIT_S)
        # the script waited for the daemon, which it then reaped: no process is left with its pid
        assert not _exists(daemon), demo.output()[-3000:]
        assert "outbox unavailable" not in demo.output()
        assert "gex-alertd stopped" in demo.output()
        await eventually(demo.redis_gone, "the demo's redis-server stopped")
    finally:
        await demo.stop()


async def test_a_port_another_redis_holds_stops_the_demo_before_its_daemon(
    private_redis: RedisServer, tmp_path: Path
) -> None:
    # the demo's redis-server could not bind (another demo's Redis on the port) and the script
    # went on: its daemon used the other server, which refused its password (or, without a
    # password, took its data), and `make run` ended 0 with a word about authentication
    demo = Demo(tmp_path, port=private_redis.port)
    try:
        proc = await demo.start(until="exit")
        output = demo.output()
        assert proc.returncode == 1, output[-3000:]
        assert f"did not start on 127.0.0.1:{private_redis.port}" in output, output[-3000:]
        assert "Address already in use" in output and "DEMO_REDIS_PORT" in output
        assert "gex-alertd started" not in output
        other = aioredis.Redis.from_url(private_redis.url)
        try:
            assert await other.dbsize() == 0  # nothing of the daemon's there
        finally:
            await other.aclose()
    finally:
        await demo.stop()


async def test_the_demo_ends_with_its_daemons_exit_status(tmp_path: Path) -> None:
    # a config `run` refuses ends `run` with 2, and `make run` said 0: its script waited for the
    # daemon and dropped the status
    demo = Demo(tmp_path)
    demo.config.write_text(demo.config.read_text() + "\nno_such_key: 1\n")
    try:
        proc = await demo.start(until="exit")
        assert proc.returncode == 2, demo.output()[-3000:]
        assert "no_such_key" in demo.output()
        await eventually(demo.redis_gone, "the demo's redis-server stopped")
    finally:
        await demo.stop()


async def test_a_demo_stopped_by_ctrl_c_ends_with_0(tmp_path: Path) -> None:
    demo = Demo(tmp_path)
    try:
        proc = await demo.start()
        os.killpg(proc.pid, signal.SIGINT)
        await asyncio.wait_for(proc.wait(), WAIT_S)
        assert proc.returncode == 0, demo.output()[-3000:]
        assert "gex-alertd stopped" in demo.output()
    finally:
        await demo.stop()
