"""quoted: an outside value in a message is repr'd and clipped to QUOTE_MAX characters."""

from __future__ import annotations

from gex_alertd.quoted import QUOTE_MAX, quoted


def test_a_short_value_is_quoted_whole() -> None:
    assert quoted("SPY") == "'SPY'"
    assert quoted("a\x1bb") == "'a\\x1bb'"  # a control character cannot reach a terminal


def test_a_long_value_is_clipped() -> None:
    assert quoted("A" * 100_000) == repr("A" * QUOTE_MAX)
