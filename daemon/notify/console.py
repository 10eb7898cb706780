"""One readable line per alert on stdout; colour on a TTY (or `color: always`)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TextIO

from gex_alertd.config import ConsoleChannel
from gex_alertd.model import AlertEvent
from gex_alertd.notify.base import DeliveryOutcome, Notifier, Ok, describe_exc, retry
from gex_alertd.notify.render import console_line


class ConsoleNotifier(Notifier):
    def __init__(self, name: str, cfg: ConsoleChannel, stream: TextIO | None = None) -> None:
        super().__init__(name)
        self.cfg = cfg
        self._stream = stream

    @property
    def stream(self) -> TextIO:
        # resolved per call so pytest's capsys / a redirected stdout is honoured
        return self._stream if self._stream is not None else sys.stdout

    def color(self) -> bool:
        if self.cfg.color == "always":
            return True
        if self.cfg.color == "never":
            return False
        isatty = getattr(self.stream, "isatty", None)
        return bool(isatty and isatty())

    async def send(self, alerts: Sequence[AlertEvent]) -> DeliveryOutcome:
        color = self.color()
        try:
            for a in alerts:
                self.stream.write(console_line(a, color=color) + "\n")
            self.stream.flush()
        except OSError as exc:  # a closed pipe: try later rather than lose the alert
            return retry(describe_exc(exc))
        return Ok()
