"""One readable line per alert on stdout; colour on a TTY (or `color: always`)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Literal, TextIO

from gex_alertd.model import AlertEvent
from gex_alertd.notify.base import ChannelType, DeliveryOutcome, Notifier, Ok, describe_exc, retry
from gex_alertd.notify.channel import ChannelBase
from gex_alertd.notify.render import (
    ANSI_RESET,
    RESOLVED_ANSI,
    RESOLVED_WORD,
    SEVERITY_ANSI,
    key_numbers,
)


class ConsoleChannel(ChannelBase, tag="console", kw_only=True):
    color: Literal["auto", "always", "never"] = "auto"


def console_line(event: AlertEvent, *, color: bool) -> str:
    sev = RESOLVED_WORD if event.resolved else event.severity.upper()
    if color:
        ansi = RESOLVED_ANSI if event.resolved else SEVERITY_ANSI.get(event.severity, "")
        sev = f"{ansi}{sev:<8}{ANSI_RESET}"
    else:
        sev = f"{sev:<8}"
    nums = " ".join(f"{k}={v}" for k, v in key_numbers(event)[:4])
    head = f"{event.fired_at} {sev} {event.symbol:<6} {event.rule}:"
    return f"{head} {event.summary}  {nums}  [{event.id}]"


class ConsoleNotifier(Notifier[ConsoleChannel]):
    def __init__(self, name: str, cfg: ConsoleChannel, stream: TextIO | None = None) -> None:
        super().__init__(name, cfg)
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


CHANNEL = ChannelType("console", ConsoleChannel, ConsoleNotifier)
