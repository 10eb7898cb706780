"""Running `gex-alertd` on a hostile config: a real subprocess under an address-space limit, so
a loader that blows up in memory fails the test (MemoryError, a traceback) instead of
swapping the machine, and a generous wall-clock bound instead of a timed assertion."""

from __future__ import annotations

import resource
import subprocess
from pathlib import Path

from tests.reliability.support import GEX_ALERTD, clean_env

CONFIGS = Path(__file__).parent / "configs"
MEMORY_LIMIT = 1024 * 1024 * 1024  # 1 GiB of address space: the bombs asked for far more
HANG_S = 120  # a hang, not a speed limit: the loader stops these in well under a second


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def gex_alertd(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [GEX_ALERTD, *args],
        capture_output=True,
        text=True,
        timeout=HANG_S,
        env=env or clean_env(),
        preexec_fn=_limit_memory,
    )


def check_offline(path: Path | str, **env: str) -> tuple[int, str]:
    """`check --offline` on the file: its exit status and everything it printed."""
    proc = gex_alertd("check", "--offline", "--config", str(path), env=clean_env(**env))
    return proc.returncode, proc.stdout + proc.stderr


def assert_check_refuses(tmp: Path, text: str, expected: list[str]) -> None:
    """`check --offline` on a config of `text` exits 2, without a traceback, naming each of
    `expected` (a problem line or the start of one)."""
    path = tmp / "bad.yaml"
    path.write_text(text)
    status, out = check_offline(path)
    assert status == 2, out
    assert "Traceback" not in out
    for fragment in expected:
        assert fragment in out, f"missing {fragment!r} in:\n{out}"
