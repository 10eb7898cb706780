"""A real redis-server on a free loopback port, for tests and benchmarks."""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
from pathlib import Path

from tests.support import process

INSTALL_HINT = (
    "redis-server not found on PATH: install it with `apt-get install -y redis-server` "
    "(or run `make test`, which installs it)"
)


def _ephemeral_range() -> tuple[int, int]:
    """The ports the kernel hands out to bind(0) and to outgoing connections."""
    try:
        lo, hi = (int(x) for x in EPHEMERAL_RANGE.read_text().split())
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default
    return lo, hi


EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST = 10000  # above the well-known and registered ports services tend to sit on


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(n: int, *, with_offset: int = 0) -> list[int]:
    """`n` distinct loopback ports free now (and each `port + with_offset` too: a cluster
    node's bus port), drawn at random outside the kernel's ephemeral range. A port the kernel
    gave out (bind(0) returns one that was free) can be given out again before the server meant
    for it binds: to an embedded simulator, an outgoing connection, a server of another test
    running beside. A port outside that range is only ever someone's by choice, and the random
    draw makes two tests choosing the same one in the same moment unlikely."""
    lo, hi = _ephemeral_range()
    spans = [(LOWEST, lo - 1 - with_offset), (hi + 1, 65535 - with_offset)]
    pool = [p for first, last in spans if first <= last for p in range(first, last + 1)]
    if len(pool) < 100 * n:  # an unusual ephemeral range: take our chances inside it
        pool = list(range(LOWEST, 65536 - with_offset))
    rng = random.Random()
    out: list[int] = []
    while len(out) < n:
        p = rng.choice(pool)
        if p not in out and port_is_free(p) and (not with_offset or port_is_free(p + with_offset)):
            out.append(p)
    return out


def free_port() -> int:
    """A loopback port free now, for a server started on it a moment later (`free_ports`)."""
    return free_ports(1)[0]


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
