"""gex_alertd.redaction: what it masks, and that it stays linear on hostile text."""

from __future__ import annotations

from gex_alertd import redaction


def test_credentials_in_any_url_are_masked() -> None:
    text = "connect redis://app:s3cret-pw@10.0.0.5:6379/0 and postgresql+asyncpg://u:p4ss@db/x"
    out = redaction.redact(text)
    assert "s3cret-pw" not in out and "p4ss" not in out
    assert "redis://app:***@10.0.0.5:6379/0" in out
    assert "postgresql+asyncpg://u:***@db/x" in out
    assert redaction.redact("see https://example.com/a:b no credentials") == (
        "see https://example.com/a:b no credentials"
    )


def test_a_huge_run_of_letters_is_scanned_once_and_a_url_after_it_still_masked() -> None:
    # with an unbounded scheme this took hours (every position rescanned the run); the suite's
    # timeout fails it then, whatever the machine's speed
    letters = "a" * 2_000_000
    out = redaction.redact(letters + "http://user:hunter22@host/x " + letters)
    assert "hunter22" not in out
    assert out == letters + "http://user:***@host/x " + letters
