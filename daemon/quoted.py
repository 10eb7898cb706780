"""How a message quotes a value that came from outside (a body's symbol, a header, a data
file's field): repr'd and clipped, so a hostile 100 KB value makes a short message whose
redaction costs nothing. Never used for our own values, which messages show whole."""

from __future__ import annotations

import re

QUOTE_MAX = 40  # characters of the value kept: enough to recognise it, never a whole body


def quoted(value: str) -> str:
    return repr(value[:QUOTE_MAX])


# C0/C1 controls and DEL: a terminal escape or a NUL from outside must not reach a terminal
# (`check`, `tail`, the console channel) or an alert's message
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """`text` with every control character made '?' (an OSC 52 sequence writes the reader's
    clipboard, others clear the screen or retitle the window)."""
    return _CONTROL.sub("?", text)
