"""How a message quotes a value that came from outside (a body's symbol, a header, a data
file's field): repr'd and clipped, so a hostile 100 KB value makes a short message whose
redaction costs nothing. Never used for our own values, which messages show whole."""

from __future__ import annotations

QUOTE_MAX = 40  # characters of the value kept: enough to recognise it, never a whole body


def quoted(value: str) -> str:
    return repr(value[:QUOTE_MAX])
