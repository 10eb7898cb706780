"""A daemon's JSON log (`ops.log_format: json`), as the tests read it from its log file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def json_events(log: Path) -> list[dict[str, Any]]:
    """The JSON lines of `log`, in order; other lines (a traceback, a library's print) and a
    last line cut short by a SIGKILL are passed over."""
    out = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass  # a line cut by SIGKILL
    return out
