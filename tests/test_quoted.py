"""quoted: an outside value in a message is repr'd and clipped to QUOTE_MAX characters."""

from __future__ import annotations

from gex_alertd import redaction
from gex_alertd.quoted import QUOTE_MAX, quoted


def test_a_short_value_is_quoted_whole() -> None:
    assert quoted("SPY") == "'SPY'"
    assert quoted("a\x1bb") == "'a\\x1bb'"  # a control character cannot reach a terminal


def test_a_long_value_is_clipped() -> None:
    assert quoted("A" * 100_000) == repr("A" * QUOTE_MAX)


def test_a_secret_across_the_clip_is_redacted_whole_not_cut_into_a_piece() -> None:
    # an upstream (or a proxy before it) echoing the request's key in a field the refusal
    # quotes: clipped first, the message kept the key's first characters, which no longer
    # matched the registered secret, so the log line's redaction let them through
    key = "fa_live_7Q2mXr9KpL4vWz8TnB3cHy6Ds1"
    redaction.register(key)
    shown = quoted("invalid symbol, key " + key + " " + "A" * 1000)
    assert key[:8] not in shown and redaction.MASK in shown
    assert len(shown) <= QUOTE_MAX + 2
