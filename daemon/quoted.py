"""How a message quotes a value that came from outside (a body's symbol, a header, a data
file's field): redacted, repr'd and clipped, so a hostile 100 KB value makes a short message whose
redaction costs little. Never used for our own values, which messages show whole."""

from __future__ import annotations

import re

QUOTE_MAX = 40  # characters of the value kept: enough to recognise it, never a whole body
# redacted before the clip, on a window that holds any secret starting inside the quote: a
# secret cut by the clip no longer matches itself, and the log line's redaction missed it
_REDACT_WINDOW = QUOTE_MAX + 1024


def quoted(value: str) -> str:
    # imported here: the rule engine loads this module (model) and nothing of the daemon's
    from gex_alertd.redaction import redact

    return repr(redact(value[:_REDACT_WINDOW])[:QUOTE_MAX])


# C0/C1 controls and DEL: a terminal escape or a NUL from outside must not reach a terminal
# (`check`, `tail`, the console channel) or an alert's message
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """`text` with every control character made '?' (an OSC 52 sequence writes the reader's
    clipboard, others clear the screen or retitle the window)."""
    return _CONTROL.sub("?", text)
