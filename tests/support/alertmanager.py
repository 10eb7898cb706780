"""A real Prometheus Alertmanager (Debian's `prometheus-alertmanager`) on a free loopback port,
clustering off, with a minimal config that routes everything to a receiver that sends nothing:
the tests read alerts back from its API."""

from __future__ import annotations

import shutil
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import msgspec

from tests.support import process
from tests.support.redis_server import free_port

BINARIES = ("prometheus-alertmanager", "alertmanager")
INSTALL_HINT = (
    "prometheus-alertmanager not found on PATH: install it with "
    "`apt-get install -y prometheus-alertmanager` (or run `make test`, which installs it)"
)
CONFIG = """\
route:
  receiver: nowhere
  group_wait: 1h
receivers:
  - name: nowhere
"""


class Alertmanager:
    def __init__(self, workdir: Path) -> None:
        binary = next((b for b in map(shutil.which, BINARIES) if b), None)
        if binary is None:
            raise RuntimeError(INSTALL_HINT)
        self.binary = binary
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        config = self.dir / "alertmanager.yml"
        config.write_text(CONFIG)
        log = (self.dir / "alertmanager.log").open("wb")
        self.proc = subprocess.Popen(
            [
                self.binary,
                f"--config.file={config}",
                f"--storage.path={self.dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--cluster.listen-address=",  # no gossip: a single, private instance
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )

        def ready() -> bool:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as resp:
                return bool(resp.status == 200)

        process.until(
            ready,
            f"alertmanager on port {self.port}",
            timeout,
            proc=self.proc,
            log=self.dir / "alertmanager.log",
            poll_s=0.05,
        )

    def stop(self) -> None:
        process.stop(self.proc)

    def api(self, method: str, path: str, body: Any = None) -> Any:
        """A call to Alertmanager's own API v2 (blocking; small and local)."""
        data = None if body is None else msgspec.json.encode(body)
        req = urllib.request.Request(
            f"{self.url}/api/v2{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            raw = resp.read()
        return msgspec.json.decode(raw) if raw else None
