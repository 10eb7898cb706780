"""A real redis-server on a free loopback port, for tests and benchmarks."""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

from tests.support import process

INSTALL_HINT = (
    "redis-server not found on PATH: install it with `apt-get install -y redis-server` "
    "(or run `make test`, which installs it)"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        *,
        aof: bool = True,
        extra_args: tuple[str, ...] = (),  # e.g. ("--requirepass", "pw")
    ):
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(INSTALL_HINT)
        self.binary = binary
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.aof = aof
        self.extra_args = extra_args
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.dir),
            "--save", "",
            "--appendonly", "yes" if self.aof else "no",
            "--appendfsync", "always" if self.aof else "no",
            "--daemonize", "no",
            "--protected-mode", "yes",
            "--logfile", str(self.dir / "redis.log"),
            *self.extra_args,
        ]  # fmt: skip
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        process.until(
            self._pong,
            f"redis-server on port {self.port}",
            timeout,
            proc=self.proc,
            log=self.dir / "redis.log",
        )

    def _pong(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith((b"+PONG", b"-NOAUTH"))  # up (with a password)

    def kill(self) -> None:
        """SIGKILL: no shutdown save, as in a crash."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        process.stop(self.proc)

    def restart(self) -> None:
        self.kill()
        self.start()
