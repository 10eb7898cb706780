"""Which `as_of` a fetched snapshot may carry to be stored: no later than now plus a small
tolerance (`source.max_future_s`), no older than the retention (`redis.retention`).

Why both: the stream entry ID is the `as_of`, and Redis refuses an ID not above the stream's
top. One body dated 2099 would become the top and every later real snapshot would be refused
as a repeat, for good, also after a restart. One older than the retention would be trimmed as
it is added. Checked against this machine's clock, before the client records the `as_of` as
seen; the trim itself runs on Redis's clock (commit.lua), never on a payload's time.

Pure: the clock is an argument.
"""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from gex_alertd.model import iso_utc

FUTURE, EXPIRED = "future", "expired"


class AsOfWindow(msgspec.Struct, frozen=True):
    max_future_s: float = 300.0
    max_age_s: float | None = None  # None: no lower bound (retention off, or trimmed by length)

    def check(self, as_of_ms: int, now_ms: int) -> tuple[str, str] | None:
        """None inside the window; else (FUTURE | EXPIRED, a message naming both instants).

        Edge cases: exactly now + max_future_s is inside; exactly now - max_age_s is inside."""
        if as_of_ms > now_ms + int(self.max_future_s * 1000):
            ahead = (as_of_ms - now_ms) / 1000
            return FUTURE, (
                f"as_of {iso_utc_ms(as_of_ms)} is {ahead:.0f} s ahead of this machine's clock "
                f"({iso_utc_ms(now_ms)}; tolerance source.max_future_s={self.max_future_s:g})"
            )
        if self.max_age_s is not None and as_of_ms < now_ms - int(self.max_age_s * 1000):
            age = (now_ms - as_of_ms) / 1000
            return EXPIRED, (
                f"as_of {iso_utc_ms(as_of_ms)} is {age:.0f} s old, beyond the retention "
                f"(redis.retention={self.max_age_s:g} s): it would be trimmed as it is stored"
            )
        return None


def iso_utc_ms(ms: int) -> str:
    return iso_utc(datetime.fromtimestamp(ms / 1000, UTC))
