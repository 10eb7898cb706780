"""scripts/ensure-system-deps.sh: `make run` asks only for what the demo needs (its Redis),
`make test` and `make bench` for the tests' binaries too. Run as a user who is not root (an
`id` earlier on PATH says uid 1000), so a missing binary is named with its install hint and
nothing is installed; the binaries present are links to the real ones."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "ensure-system-deps.sh"


def _bin(tmp_path: Path, present: list[str]) -> Path:
    """A PATH directory holding `present` (links to the real binaries), an `id` saying 1000,
    and the shell tools the script runs."""
    d = tmp_path / "bin"
    d.mkdir()
    for name in present:
        real = shutil.which(name)
        assert real, f"{name} is not installed here: apt-get install the Debian package"
        (d / name).symlink_to(real)
    (d / "id").write_text("#!/bin/sh\necho 1000\n")
    (d / "id").chmod(0o755)
    return d


def _run(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": str(path)}
    bash = shutil.which("bash")
    assert bash
    return subprocess.run(
        [bash, str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_the_demo_needs_its_redis_only(tmp_path: Path) -> None:
    path = _bin(tmp_path, ["redis-server", "redis-cli"])
    assert _run(path, "run").returncode == 0  # no chromium, alertmanager or systemd-analyze
    done = _run(path)
    assert done.returncode == 1
    # chromium is looked for at /usr/bin/chromium, not on PATH: named only where it is missing
    chromium = "" if Path("/usr/bin/chromium").exists() else " chromium"
    assert done.stderr.startswith(f"missing: systemd{chromium} prometheus-alertmanager."), done
    assert "sudo apt-get install -y" in done.stderr


def test_the_demo_without_redis_is_told_what_to_install(tmp_path: Path) -> None:
    done = _run(_bin(tmp_path, []), "run")
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "missing: redis-server redis-tools. Install them with: "
        "sudo apt-get install -y redis-server redis-tools"
    )
