"""The reload handshake behind `gex-alertd reload --wait` (the unit's `ExecReload=`).

systemd before 253 only knows a reload is over when `ExecReload=` exits, and `kill -HUP`
exits at once: `systemctl reload` would return while the daemon is still reading its config,
and report success for a config it then refuses. So the daemon keeps a small status file in
its runtime directory (`$RUNTIME_DIRECTORY/reload.json`, from the unit's `RuntimeDirectory=`):

    {"pid": 1234, "requested": 3, "done": 3, "outcome": "applied", "problems": [], "at": ...}

`requested` counts the SIGHUPs the daemon has received (bumped in the signal handler, before
anything else); a reload takes a lock, notes `requested` as it begins reading the config, and
when it is over writes that number as `done` with its outcome. `gex-alertd reload --wait`
reads `requested`, sends SIGHUP and waits until `done` reaches it plus one: a reload that
began after its signal has finished. Reloads are serialised, so signals that arrive during one
are served by the next (which reads the newest file).

Written atomically (temporary file + rename). With no runtime directory (not under systemd)
nothing is written and `reload --wait` says so; a write that fails is logged once per run of
failures and never stops a reload.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Literal

import msgspec
import structlog

from gex_alertd.model import iso_utc

log = structlog.get_logger(__name__)

FILE_NAME = "reload.json"
Outcome = Literal["applied", "refused"]


class ReloadState(msgspec.Struct, kw_only=True):
    # a pid, never 0 or negative: `reload` sends SIGHUP to it, and kill(0) is the sender's whole
    # process group, kill(-1) every process it may signal (as root: the machine)
    pid: Annotated[int, msgspec.Meta(ge=1)]
    requested: int = 0
    done: int = 0
    outcome: Outcome | None = None
    problems: list[str] = []
    at: str | None = None


def default_path(environ: dict[str, str] | None = None) -> Path | None:
    """`$RUNTIME_DIRECTORY/reload.json`; systemd joins several directories with ':'."""
    env = os.environ if environ is None else environ
    runtime = env.get("RUNTIME_DIRECTORY", "").split(":")[0]
    return Path(runtime) / FILE_NAME if runtime else None


def read(path: Path) -> ReloadState:
    """The current state; OSError when missing, msgspec errors when not ours."""
    return msgspec.json.decode(path.read_bytes(), type=ReloadState)


class ReloadStatus:
    def __init__(self, path: Path | None, pid: int | None = None) -> None:
        self.path = path
        self.state = ReloadState(pid=os.getpid() if pid is None else pid)
        self._failing = False

    def start(self) -> None:
        """At start-up: a fresh file for this process (a restart is a new pid)."""
        self._write()

    def requested(self) -> None:
        """From the SIGHUP handler, before the reload task runs."""
        self.state.requested += 1
        self._write()

    def begin(self) -> int:
        """A reload begins reading the config: the signals it answers."""
        return self.state.requested

    def finish(self, began_at: int, outcome: Outcome, problems: list[str] | None = None) -> None:
        self.state.done = max(self.state.done, began_at)
        self.state.outcome = outcome
        self.state.problems = list(problems or [])
        self.state.at = iso_utc(datetime.now(UTC))
        self._write()

    def _write(self) -> None:
        if self.path is None:
            return
        tmp = self.path.with_name(f".{self.path.name}.{self.state.pid}.tmp")
        try:
            tmp.write_bytes(msgspec.json.encode(self.state))
            os.replace(tmp, self.path)
        except OSError as exc:
            if not self._failing:
                log.warning("cannot write the reload status", path=str(self.path), error=str(exc))
            self._failing = True
            return
        self._failing = False
