"""`gex-alertd reload [--wait]`: SIGHUP the running daemon and, with --wait, return only once
the reload is over, exit 0 when the new config was applied and 1 when it was refused (the
problems on stderr). It is the unit's `ExecReload=` for systemd before 253, so `systemctl
reload` reports the real outcome; the handshake is in ops/reload_status.py."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import NoReturn

import click
import msgspec

from gex_alertd.ops import reload_status

POLL_S = 0.05


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else: the kill will say so
        return True
    return True


def _read(path: Path) -> reload_status.ReloadState | None:
    try:
        return reload_status.read(path)
    except FileNotFoundError:
        return None
    except (OSError, msgspec.DecodeError, msgspec.ValidationError) as exc:
        _fail(f"cannot read the reload status {path}: {exc}")


@click.command("reload")
@click.option(
    "--wait/--no-wait",
    default=True,
    show_default=True,
    help="Wait until the daemon has applied or refused the config.",
)
@click.option(
    "--pid",
    type=click.IntRange(min=1),  # kill(0) or kill(-1) would be a process group, or everything
    default=None,
    help="The daemon's pid ($MAINPID in the unit; default: from the status file).",
)
@click.option(
    "--status-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Default: $RUNTIME_DIRECTORY/reload.json (the unit's RuntimeDirectory=).",
)
@click.option("--timeout", type=float, default=80.0, show_default=True,
              help="Seconds to wait for the reload to finish.")  # fmt: skip
def reload(wait: bool, pid: int | None, status_file: Path | None, timeout: float) -> None:
    """Reload the running daemon's config (SIGHUP) and report how it went."""
    path = status_file or reload_status.default_path()
    if path is None:
        _fail("no --status-file and no $RUNTIME_DIRECTORY: run under the systemd unit "
              "(RuntimeDirectory=gex-alertd) or pass --status-file")  # fmt: skip
    before = _read(path)
    if before is None:
        _fail(f"no reload status at {path}: is gex-alertd running (and started with "
              f"RUNTIME_DIRECTORY={path.parent})?")  # fmt: skip
    target = pid if pid is not None else before.pid
    if before.pid != target:
        _fail(f"the status file {path} belongs to pid {before.pid}, not {target}")
    try:
        os.kill(target, signal.SIGHUP)
    except OSError as exc:
        _fail(f"cannot signal pid {target}: {exc.strerror}")
    if not wait:
        click.echo(f"sent SIGHUP to {target}")
        return
    want = before.requested + 1
    deadline = time.monotonic() + timeout
    while True:
        state = _read(path)
        if state is not None and state.pid != target:
            _fail(f"the daemon restarted (pid {state.pid}) during the reload")
        if state is not None and state.done >= want:
            break
        if not _alive(target):
            _fail(f"the daemon (pid {target}) exited during the reload")
        if time.monotonic() > deadline:
            _fail(f"the reload did not finish within {timeout:g}s (pid {target})")
        time.sleep(POLL_S)
    if state.outcome == "applied":
        click.echo(f"config reloaded (pid {target})")
        return
    click.echo(f"error: reload refused, the old config keeps running (pid {target}):", err=True)
    for problem in state.problems:
        click.echo(f"  {problem}", err=True)
    sys.exit(1)
