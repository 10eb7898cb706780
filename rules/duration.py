"""Durations in rule and daemon config: seconds as a float, written `500ms`, `10m`, `1h30m`.

Lives with the rules because a rule's `cooldown` is one; the daemon's typed config uses the
same type so a duration is parsed in exactly one place.
"""

from __future__ import annotations

import math
import re
from typing import Any


class Duration(float):
    """Seconds; accepts numbers or strings such as `500ms`, `15s`, `10m`, `1h30m`, `7d`."""


_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


def parse_duration(value: Any) -> Duration:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"expected a finite duration, got {value!r}")
    out = _parse(value)
    if not math.isfinite(out):  # .nan or an overflow: a timer that never (or at once) fires
        raise ValueError(f"expected a finite duration, got {value!r}")
    return out


def _parse(value: Any) -> Duration:
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as 10m, got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"duration must not be negative, got {value}")
        return Duration(value)
    if isinstance(value, str):
        text = value.strip().replace(" ", "")
        if re.fullmatch(r"\d+(\.\d+)?", text):
            return Duration(float(text))
        pos, total = 0, 0.0
        for m in _PART.finditer(text):
            if m.start() != pos:
                break
            total += float(m.group(1)) * _UNITS[m.group(2)]
            pos = m.end()
        if text and pos == len(text):
            return Duration(total)
    raise ValueError(f"expected a duration such as 30s, 10m, 7d, got {value!r}")
